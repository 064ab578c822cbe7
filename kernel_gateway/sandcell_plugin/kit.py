"""Declaring a plugin (``@plugin``), its invocation context, and running one invocation.

The kit depends on nothing but the standard library, so a plugin module imports cleanly
anywhere; the gRPC host (``host.py``) turns the events of :func:`run_invocation` into PPP
messages.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import inspect
import json
import sys
import traceback
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

LEVELS = ("debug", "info", "warning", "error")


class PluginFailure(Exception):
    """Raise from a plugin to fail an invocation with a chosen ``code`` (default ``plugin_error``).

    >>> PluginFailure("operand2 must not be zero", code="division_by_zero").code
    'division_by_zero'
    """

    def __init__(self, message: str, *, code: str = "plugin_error", details: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


@dataclasses.dataclass(frozen=True)
class Event:
    """One thing an invocation emits: ``progress``, ``log``, ``completed`` or ``failed``."""

    kind: str
    fields: dict[str, Any]


class Context:
    """What a plugin function receives first: report progress and log lines as it works.

    Safe to call from the plugin's thread (synchronous plugins run in a worker thread).

    Example::

        @plugin(name="slow", version="1.0.0")
        def slow(ctx: Context, n: int) -> dict:
            for i in range(n):
                ctx.progress(100 * (i + 1) / n, f"step {i + 1} of {n}")
            return {"done": n}
    """

    def __init__(self, invocation_id: str, emit: Callable[[Event], None]) -> None:
        self.invocation_id = invocation_id
        self._emit = emit

    def progress(self, percent: float, message: str = "") -> None:
        """Report how far along the invocation is (0–100), with an optional message."""
        self._emit(Event("progress", {"percent": min(100.0, max(0.0, float(percent))),
                                      "message": str(message)}))

    def log(self, message: str, level: str = "info") -> None:
        """Send a log line to the caller (``debug``, ``info``, ``warning`` or ``error``)."""
        self._emit(Event("log", {"level": level if level in LEVELS else "info",
                                 "message": str(message)}))


@dataclasses.dataclass(frozen=True)
class Plugin:
    """A plugin: its function plus the name and version it answers to.

    ``func(ctx, **inputs)`` returns the output, a JSON-serialisable dict; it may be a
    coroutine function. Schemas are optional here: the manifest ``plugin.json`` declares
    them for the gateway, which validates input and output.

    >>> p = Plugin("echo", "1.0.0", lambda ctx, **kw: kw)
    >>> (p.name, p.version)
    ('echo', '1.0.0')
    """

    name: str
    version: str
    func: Callable[..., Any]
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None

    def __call__(self, ctx: Context, **inputs: Any) -> Any:
        return self.func(ctx, **inputs)


def plugin(*, name: str, version: str, input_schema: dict[str, Any] | None = None,
           output_schema: dict[str, Any] | None = None) -> Callable[[Callable[..., Any]], Plugin]:
    """Decorate ``func(ctx, **inputs) -> dict`` to make it a :class:`Plugin`.

    >>> @plugin(name="double", version="1.0.0")
    ... def double(ctx, x):
    ...     return {"result": 2 * x}
    >>> double.name, double(None, x=2)
    ('double', {'result': 4})
    """

    def wrap(func: Callable[..., Any]) -> Plugin:
        return Plugin(name, version, func, input_schema, output_schema)

    return wrap


def load_plugin(entrypoint: str, plugin_dir: Path | None = None) -> Plugin:
    """Import ``module:attribute`` (from ``plugin_dir`` when given) and return the Plugin."""
    module_name, _, attribute = entrypoint.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"entrypoint must look like 'module:attribute', not {entrypoint!r}")
    if plugin_dir is not None and str(plugin_dir) not in sys.path:
        sys.path.insert(0, str(plugin_dir))
    found = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(found, Plugin):
        raise TypeError(f"{entrypoint} is {type(found).__name__}, not a @plugin function")
    return found


async def run_invocation(plugin: Plugin, inputs: dict[str, Any],
                         invocation_id: str = "") -> AsyncIterator[Event]:
    """Run ``plugin`` once, yielding its progress and log events as they happen, then
    exactly one ``completed`` (with ``output``) or ``failed`` (``code``, ``message``,
    ``details``) event."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event | None] = asyncio.Queue()

    def emit(event: Event) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, event)

    task = asyncio.ensure_future(_call(plugin, Context(invocation_id, emit), inputs))
    task.add_done_callback(lambda _: loop.call_soon(queue.put_nowait, None))
    try:
        while (event := await queue.get()) is not None:
            yield event
        yield _outcome(task)
    finally:
        task.cancel()


async def _call(plugin: Plugin, ctx: Context, inputs: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(plugin.func):
        return await plugin(ctx, **inputs)
    return await asyncio.to_thread(plugin, ctx, **inputs)


def _outcome(task: asyncio.Future[Any]) -> Event:
    exc = task.exception()
    if isinstance(exc, PluginFailure):
        return Event("failed", {"code": exc.code, "message": exc.message, "details": exc.details})
    if exc is not None:
        details = "".join(traceback.format_exception(exc))
        return Event("failed", {"code": "plugin_error", "message": f"{type(exc).__name__}: {exc}",
                                "details": details})
    output = task.result()
    if not isinstance(output, dict):
        return Event("failed", {"code": "invalid_output", "details": "",
                                "message": f"the plugin returned {type(output).__name__}, not a dict"})
    try:
        return Event("completed", {"output_json": json.dumps(output)})
    except (TypeError, ValueError) as err:
        return Event("failed", {"code": "invalid_output", "details": "",
                                "message": f"the plugin's output is not JSON: {err}"})
