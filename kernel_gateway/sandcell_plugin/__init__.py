"""Sandcell's plugin authoring kit: write a plugin as a function, serve it over PPP (gRPC).

Example::

    from sandcell_plugin import Context, plugin

    @plugin(name="subtract_numbers", version="1.0.0")
    def subtract(ctx: Context, operand1: float, operand2: float) -> dict:
        ctx.progress(50, "subtracting")
        return {"result": float(operand1 - operand2)}

The worker image runs ``python -m sandcell_plugin.host --plugin DIR --socket PATH``, which
loads the entrypoint named in ``DIR/plugin.json`` and serves it. See docs/plugins.md.
"""

from __future__ import annotations

from .kit import Context, Plugin, PluginFailure, load_plugin, plugin

__all__ = ["Context", "Plugin", "PluginFailure", "load_plugin", "plugin"]
