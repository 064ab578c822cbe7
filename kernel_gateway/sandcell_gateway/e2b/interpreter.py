"""E2B's code interpreter (port 49999) at ``<gateway>/e2b/sbx``: ``POST /execute`` streams
the cell's output as E2B's NDJSON, mapped from Sandcell's execute events (one kernel, so the
same rich results: PNG, HTML, DataFrames). A sandbox has one kernel, so one context:
``default``, Python, in ``/home/user`` (docs/e2b.md).

>>> lines(event("execute_result", data={"text/plain": "42"}, execution_count=1))
[{'type': 'result', 'text': '42', 'is_main_result': True}]
>>> lines(event("error", ename="ValueError", evalue="x", traceback=["a", "b"]))
[{'type': 'error', 'name': 'ValueError', 'value': 'x', 'traceback': 'a\\nb'}]
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any

from ..cells import CellEnd
from ..errors import BadRequest, NotFound
from ..streaming import EventStreamHandler
from ..validation import Field
from .base import INTERPRETER_PORT, SandboxRequestHandler
from .models import HOME

Event = dict[str, Any]
DEFAULT_CONTEXT = "default"
EXECUTE_FIELDS = {"code": Field(str, required=True), "context_id": Field(str, nullable=True),
                  "language": Field(str, nullable=True),
                  "env_vars": Field(dict, items=str, nullable=True)}
CONTEXT_FIELDS = {"language": Field(str), "cwd": Field(str)}
# MIME type -> the field of E2B's Result; any other type goes into its ``extra``
MIME_FIELDS = {"text/plain": "text", "text/html": "html", "text/markdown": "markdown",
               "image/svg+xml": "svg", "image/png": "png", "image/jpeg": "jpeg",
               "application/pdf": "pdf", "text/latex": "latex", "application/json": "json",
               "application/javascript": "javascript"}


def event(msg_type: str, **content: Any) -> Event:
    return {"msg_type": msg_type, "content": content}


def lines(sandcell_event: Event) -> list[dict[str, Any]]:
    """The E2B output lines one Sandcell execute event becomes (often none)."""
    kind, content = sandcell_event["msg_type"], sandcell_event["content"]
    if kind == "stream":
        return [{"type": content["name"], "text": content["text"], "timestamp": time.time_ns()}]
    if kind in ("execute_result", "display_data"):
        return [result(content.get("data") or {}, is_main=kind == "execute_result")]
    if kind == "error":
        return [{"type": "error", "name": content["ename"], "value": content["evalue"],
                 "traceback": "\n".join(content.get("traceback") or [])}]
    if kind == "execute_input":
        return [{"type": "number_of_executions", "execution_count": content["execution_count"]}]
    if kind == "gateway_error":
        return [{"type": "error", "name": content["code"], "value": content["message"],
                 "traceback": ""}]
    if kind == "execute_reply":
        return [{"type": "end_of_execution"}]
    return []


def result(data: dict[str, Any], is_main: bool) -> dict[str, Any]:
    """A mime bundle as E2B's ``Result`` fields."""
    fields: dict[str, Any] = {"type": "result"}
    extra = {}
    for mime, value in data.items():
        if mime in MIME_FIELDS:
            fields[MIME_FIELDS[mime]] = value
        else:
            extra[mime] = value
    if extra:
        fields["extra"] = extra
    fields["is_main_result"] = is_main
    return fields


async def e2b_lines(events: AsyncGenerator[Event, None]) -> AsyncGenerator[Event, None]:
    """The cell's events as E2B lines, until the cell is over (cells.CellEnd)."""
    end = CellEnd()
    try:
        async for sandcell_event in events:
            for line in lines(sandcell_event):
                yield line
            if end.see(sandcell_event):
                return
    finally:
        await events.aclose()


def check_context(context_id: str | None, language: str | None) -> None:
    if context_id not in (None, DEFAULT_CONTEXT):
        raise NotFound(f"context {context_id!r} not found: a Sandcell sandbox has one, "
                       f"{DEFAULT_CONTEXT!r} (docs/e2b.md)")
    if language not in (None, "python"):
        raise BadRequest(f"language {language!r}: a Sandcell sandbox runs Python only")


class InterpreterHandler(SandboxRequestHandler):
    port = INTERPRETER_PORT


class ExecuteHandler(InterpreterHandler, EventStreamHandler):
    """A client that leaves (the SDK's own timeout) interrupts the cell, as Sandcell's own
    execute route does."""

    async def post(self) -> None:
        body = self.body(EXECUTE_FIELDS)
        check_context(body.get("context_id"), body.get("language"))
        if body.get("env_vars"):
            raise BadRequest("env_vars: set the environment when creating the sandbox "
                             "(Sandbox.create(envs=...)); Sandcell has no per-run environment")
        events = self.service.execute(self.sandbox.id, self.tenant, body["code"], None)
        await self.stream(e2b_lines(events),
                          left=f"client left an execution on {self.sandbox.id}; interrupting it")


def context() -> dict[str, str]:
    return {"id": DEFAULT_CONTEXT, "language": "python", "cwd": HOME}


class ContextsHandler(InterpreterHandler):
    def post(self) -> None:
        body = self.body(CONTEXT_FIELDS)
        check_context(None, body.get("language"))
        if body.get("cwd", HOME) != HOME:
            raise BadRequest(f"cwd: the one context runs in {HOME} (os.chdir in it moves it)")
        self.write_json(context())

    def get(self) -> None:
        self.write_json([context()])


class ContextHandler(InterpreterHandler):
    def delete(self, context_id: str) -> None:
        """The one context stays (it is the sandbox's kernel): deleting it is a no-op."""
        check_context(context_id, None)
        self.set_status(204)
        self.finish()


class ContextRestartHandler(InterpreterHandler):
    def post(self, context_id: str) -> None:
        check_context(context_id, None)
        raise BadRequest("restarting a context is not supported: a Sandcell restart "
                         "replaces the whole sandbox (docs/e2b.md)")


ROUTES: list[tuple[str, type[SandboxRequestHandler]]] = [
    (r"/e2b/sbx/execute", ExecuteHandler),
    (r"/e2b/sbx/contexts", ContextsHandler),
    (r"/e2b/sbx/contexts/([^/]+)", ContextHandler),
    (r"/e2b/sbx/contexts/([^/]+)/restart", ContextRestartHandler),
]
