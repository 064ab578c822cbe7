"""A plugin whose output proves which worker process served it, for the reuse tests."""

from __future__ import annotations

import itertools
import socket

from sandcell_plugin import Context, PluginFailure, plugin

_calls = itertools.count(1)


@plugin(name="sandcell_reuse_plugin", version="0.1.0")
def count(ctx: Context, fail: bool = False) -> dict[str, object]:
    calls = next(_calls)  # per process: a reused worker counts on
    if fail:
        raise PluginFailure("asked to fail", code="asked_to_fail")
    ctx.progress(100, f"call {calls}")
    return {"calls": calls, "host": socket.gethostname()}  # the container's own hostname
