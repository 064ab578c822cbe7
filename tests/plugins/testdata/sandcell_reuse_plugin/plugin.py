"""A plugin whose output proves which worker process served it, for the reuse tests.

It keeps state in process memory, as a careless plugin would: a call counter and every
``remember`` value it was given. A call that sees another tenant's value saw its worker.
"""

from __future__ import annotations

import itertools
import socket

from sandcell_plugin import Context, PluginFailure, plugin

_calls = itertools.count(1)
_remembered: list[str] = []


@plugin(name="sandcell_reuse_plugin", version="0.1.0")
def count(ctx: Context, fail: bool = False, remember: str = "") -> dict[str, object]:
    calls = next(_calls)  # per process: a reused worker counts on
    if remember:
        _remembered.append(remember)
    if fail:
        raise PluginFailure("asked to fail", code="asked_to_fail")
    ctx.progress(100, f"call {calls}")
    return {"calls": calls, "host": socket.gethostname(),  # the container's own hostname
            "remembered": list(_remembered)}
