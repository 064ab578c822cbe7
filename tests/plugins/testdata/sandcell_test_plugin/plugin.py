"""A plugin that misbehaves on request, for the plugin runtime's tests."""

from __future__ import annotations

import os
import time

from sandcell_plugin import Context, PluginFailure, plugin


@plugin(name="sandcell_test_plugin", version="0.1.0")
def behave(ctx: Context, mode: str, steps: int = 3, seconds: float = 60) -> dict[str, object]:
    if mode == "crash":
        ctx.progress(10, "about to crash")
        time.sleep(0.2)  # let the progress event leave before the process dies
        os._exit(3)
    if mode == "sleep":
        ctx.progress(1, "sleeping")
        time.sleep(seconds)
    if mode == "fail":
        raise PluginFailure("asked to fail", code="asked_to_fail", details="mode=fail")
    if mode == "bad_output":
        return {"steps": "three"}
    if mode == "big":
        return {"steps": 0, "blob": "x" * (3 << 20)}
    if mode == "flood":  # far more progress than anyone can use
        for i in range(5000):
            ctx.progress(i / 50, "flooding")
        return {"steps": 5000}
    if mode == "shout":  # one gRPC message over the gateway's receive limit
        ctx.progress(50, "x" * (5 << 20))
    for i in range(steps):
        ctx.log(f"step {i + 1}")
        ctx.progress(100 * (i + 1) / steps, f"step {i + 1} of {steps}")
    return {"steps": steps}
