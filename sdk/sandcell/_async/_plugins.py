"""``client.plugins``: list plugins, read their manifests, invoke them with live progress.

Edit ``sdk/sandcell/_async/_plugins.py``; ``scripts/unasync.py`` writes its sync twin
``sdk/sandcell/_sync/_plugins.py`` from it.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from .._core import json_object
from .._exceptions import PluginError
from .._plugin_models import (
    CompletedEvent,
    FailedEvent,
    PluginEvent,
    PluginInfo,
    ProgressEvent,
    ProgressReporter,
    invoke_body,
    parse_plugin_event,
    plugin_path,
)
from ._lines import AsyncResponseLines

if TYPE_CHECKING:
    from ._client import AsyncGatewayAPI

__all__ = ["AsyncPlugin", "AsyncPluginInvocation", "AsyncPlugins"]


class AsyncPluginInvocation:
    """A running invocation: iterate its events as they happen, then take the output.

    Nothing is sent until you iterate, enter it, or call ``result()``. Leaving the
    ``with`` block early closes the connection, which cancels the invocation.

    Example::

        async with plugin.invoke_stream(operand1=10, operand2=5) as invocation:
            async for event in invocation:
                if isinstance(event, sandcell.ProgressEvent):
                    print(event.percent, event.message)
            output = await invocation.result()
    """

    def __init__(self, api: AsyncGatewayAPI, plugin: str, request: httpx.Request) -> None:
        self._plugin = plugin
        self._lines = AsyncResponseLines(api, request)
        self.events: list[PluginEvent] = []

    @property
    def outcome(self) -> PluginEvent | None:
        """The ``CompletedEvent`` or ``FailedEvent``, once it arrived."""
        last = self.events[-1] if self.events else None
        return last if isinstance(last, (CompletedEvent, FailedEvent)) else None

    async def result(self) -> dict[str, Any]:
        """Read the rest of the stream; the output, or ``PluginError`` if it failed."""
        async for _ in self:
            pass
        outcome = self.outcome
        if isinstance(outcome, CompletedEvent):
            return outcome.output
        if isinstance(outcome, FailedEvent):
            raise outcome.error(self._plugin)
        raise PluginError(self._plugin, "no_result", "the stream ended without a result")

    async def close(self) -> None:
        """Stop reading and close the connection (an unfinished invocation is cancelled)."""
        await self._lines.close()

    def __aiter__(self) -> AsyncPluginInvocation:
        return self

    async def __anext__(self) -> PluginEvent:
        while not self._lines.finished:
            line = await self._lines.next()
            event = parse_plugin_event(line) if line is not None else None
            if event is not None:
                self.events.append(event)
                return event
        raise StopAsyncIteration

    async def __aenter__(self) -> AsyncPluginInvocation:
        await self._lines.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._plugin} events={len(self.events)}>"


class AsyncPlugin:
    """One plugin: its manifest (``info``) and ``invoke``.

    Example::

        subtract = await client.plugins.get("subtract_numbers")
        print(subtract.version, subtract.input_schema)
        output = await subtract.invoke(operand1=10, operand2=5)   # {"result": 5.0, ...}
    """

    def __init__(self, api: AsyncGatewayAPI, info: PluginInfo) -> None:
        self._api = api
        self.info = info

    @property
    def name(self) -> str:
        """The plugin's name, e.g. ``subtract_numbers``."""
        return self.info.name

    @property
    def version(self) -> str:
        """The version the gateway serves."""
        return self.info.version

    @property
    def language(self) -> str:
        """The language the plugin is written in (``python``, ``java``)."""
        return self.info.language

    @property
    def input_schema(self) -> dict[str, Any]:
        """The JSON Schema its inputs must match (checked by the gateway)."""
        return self.info.input_schema

    @property
    def output_schema(self) -> dict[str, Any]:
        """The JSON Schema of its output."""
        return self.info.output_schema

    async def invoke(
        self,
        *,
        timeout: float | None = None,
        on_progress: Callable[[ProgressEvent], object] | None = None,
        progress: bool = True,
        **inputs: Any,
    ) -> dict[str, Any]:
        """Run the plugin on a fresh worker with ``inputs``; return its output.

        When ``progress`` is true, progress shows on stderr as a tqdm widget in a notebook, a
        tqdm bar on a terminal, or a few plain lines in a file or pipe (docs/plugins.md); it
        always goes to ``on_progress``. Raises ``PluginError`` when the invocation fails and
        ``BadRequestError`` (code ``invalid_input``) when ``inputs`` do not match the schema.
        """
        reporter = ProgressReporter(self.name, progress, on_progress)
        try:
            async with self.invoke_stream(timeout=timeout, **inputs) as invocation:
                async for event in invocation:
                    reporter(event)
                return await invocation.result()
        finally:
            reporter.close()

    def invoke_stream(self, *, timeout: float | None = None, **inputs: Any) -> AsyncPluginInvocation:
        """Run the plugin and return a handle that yields its events as they happen."""
        request = self._api.build_request(
            "POST",
            plugin_path(self.name, "invoke"),
            json=invoke_body(inputs, timeout),
            timeout=self._api.timeout.for_execution(timeout),
        )
        return AsyncPluginInvocation(self._api, self.name, request)

    async def refresh(self) -> PluginInfo:
        """Fetch the manifest again."""
        response = await self._api.request("GET", plugin_path(self.name))
        self.info = PluginInfo.from_json(json_object(response))
        return self.info

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r}, language={self.language!r})"


class AsyncPlugins:
    """``client.plugins``: the gateway's plugin registry.

    Example::

        async with sandcell.AsyncClient() as client:
            print([plugin.name for plugin in await client.plugins.list()])
            output = await client.plugins.invoke("subtract_numbers", operand1=10, operand2=5)
    """

    def __init__(self, api: AsyncGatewayAPI) -> None:
        self._api = api

    async def list(self) -> builtins.list[AsyncPlugin]:
        """Every plugin the gateway serves."""
        response = await self._api.request("GET", plugin_path())
        plugins = json_object(response).get("plugins") or []
        return [AsyncPlugin(self._api, PluginInfo.from_json(info)) for info in plugins]

    async def get(self, name: str) -> AsyncPlugin:
        """The plugin called ``name`` with its manifest; ``NotFoundError`` if there is none."""
        response = await self._api.request("GET", plugin_path(name))
        return AsyncPlugin(self._api, PluginInfo.from_json(json_object(response)))

    async def invoke(
        self,
        name: str,
        /,
        *,
        timeout: float | None = None,
        on_progress: Callable[[ProgressEvent], object] | None = None,
        progress: bool = True,
        **inputs: Any,
    ) -> dict[str, Any]:
        """Invoke plugin ``name`` without fetching its manifest first (one request)."""
        plugin = AsyncPlugin(self._api, PluginInfo(name=name, version=""))
        return await plugin.invoke(timeout=timeout, on_progress=on_progress, progress=progress, **inputs)
