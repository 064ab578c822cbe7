"""Tornado handlers for ``/api/v1/plugins`` and the calculator API ``/api/v1/calculate``."""

from __future__ import annotations

from typing import Any

from ..base import BaseHandler
from ..errors import NotFound
from ..streaming import EventStreamHandler
from ..validation import MAX_SECONDS, Field, decode_object
from .registry import InvalidInput
from .service import PluginService

INVOKE_FIELDS = {
    "input": Field(dict, required=True),
    "timeout": Field((int, float), minimum=0.001, maximum=MAX_SECONDS, nullable=True),
}
# The original platform's calculator: each operation is a plugin.
CALCULATOR = {"add": "add_numbers", "multiply": "multiply_numbers", "subtract": "subtract_numbers"}


class PluginBaseHandler(BaseHandler):
    """Adds the plugin service and ``fields`` to ``invalid_input`` errors."""

    @property
    def plugins(self) -> PluginService:
        if self.deps.plugins is None:
            raise NotFound("the plugin runtime is disabled on this gateway ([plugins] enabled = false)")
        return self.deps.plugins

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if not isinstance(exc, InvalidInput):
            return super().write_error(status_code, **kwargs)
        self.set_header("Content-Type", "application/json")
        self.finish({"error": {"code": exc.code, "message": exc.message, "fields": exc.fields,
                               "request_id": self.request_id}})


class PluginsHandler(PluginBaseHandler):
    def get(self) -> None:
        self.write_json({"plugins": self.plugins.list()})


class PluginHandler(PluginBaseHandler):
    def get(self, name: str) -> None:
        self.write_json(self.plugins.describe(name))


class InvokeHandler(PluginBaseHandler, EventStreamHandler):
    """Streams an invocation's events as NDJSON (streaming.py): progress/log as they happen,
    then ``completed`` or ``failed``. A client that disconnects cancels the invocation (its
    worker is killed)."""

    async def post(self, name: str) -> None:
        body = self.body(INVOKE_FIELDS)
        invocation = await self.plugins.open(name, body["input"], body.get("timeout"),
                                             tenant=self.tenant)
        try:
            await self.stream(invocation.events(),
                              left=f"client left invocation {invocation.id} of {name}; cancelling it")
        finally:
            await invocation.close()


class CalculateHandler(PluginBaseHandler):
    """``POST /api/v1/calculate/{add|multiply|subtract}`` ``{"operand1": 10, "operand2": 5}``
    → ``{"result": 15.0, "operation": "add", "operand1": 10.0, "operand2": 5.0}``."""

    async def post(self, operation: str) -> None:
        plugin = CALCULATOR.get(operation)
        if plugin is None:
            raise NotFound(f"no calculator operation {operation!r}; "
                           f"use one of {', '.join(sorted(CALCULATOR))}")
        if plugin not in self.plugins.registry:
            raise NotFound(f"calculator operation {operation!r} needs the plugin {plugin!r}, "
                           "which is not registered on this gateway", code="plugin_unavailable")
        # the plugin's input schema checks the operands (and refuses unknown fields)
        operands = decode_object(self.raw_body())
        self.write_json(await self.plugins.invoke(plugin, operands, tenant=self.tenant))


_NAME = r"([^/]+)"
ROUTES: list[tuple[str, type[BaseHandler]]] = [
    (r"/api/v1/plugins", PluginsHandler),
    (rf"/api/v1/plugins/{_NAME}", PluginHandler),
    (rf"/api/v1/plugins/{_NAME}/invoke", InvokeHandler),
    (rf"/api/v1/calculate/{_NAME}", CalculateHandler),
]
