"""Tornado handlers for ``/api/v1``: parse, call the service, serialise. Nothing else."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import uuid
from typing import Any

import tornado.web
from tornado.iostream import StreamClosedError

from . import __version__
from .errors import GatewayError, NotFound, PayloadTooLarge, Unauthorized
from .openapi import openapi_document
from .service import SandboxService
from .validation import Field, parse_body

log = logging.getLogger(__name__)

STATUS_CODES = {400: "invalid_request", 401: "unauthorized", 404: "not_found",
                405: "method_not_allowed", 413: "body_too_large"}

CREATE_FIELDS = {
    "template": Field(str),
    "timeout": Field((int, float), minimum=1),
    "env": Field(dict, items=str),
    "metadata": Field(dict, items=str),
}
EXECUTE_FIELDS = {
    "code": Field(str, required=True),
    "timeout": Field((int, float), minimum=0.001, nullable=True),
}


class BaseHandler(tornado.web.RequestHandler):
    """JSON in, JSON out, Bearer auth, one ``write_error`` for every failure."""

    public = False  # True for routes that need no token

    def initialize(self, service: SandboxService, token: str, max_body_size: int) -> None:
        self.service = service
        self.token = token
        self.max_body_size = max_body_size

    def set_default_headers(self) -> None:
        # runs again when an error clears the headers, so errors carry the same id
        if not hasattr(self, "request_id"):
            self.request_id = uuid.uuid4().hex
        self.set_header("X-Request-Id", self.request_id)

    def prepare(self) -> None:
        if self.request.connection is not None and hasattr(self.request.connection, "stream"):
            self.request.connection.stream.set_nodelay(True)  # see DESIGN.md: Nagle costs ~40 ms
        if not self.public and not self._authorized():
            raise Unauthorized("missing or wrong token: send 'Authorization: Bearer <token>' "
                               "(the gateway prints its token at start)")
        if len(self.request.body or b"") > self.max_body_size:
            raise PayloadTooLarge(f"request body over {self.max_body_size} bytes")

    def _authorized(self) -> bool:
        scheme, _, given = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return False
        return hmac.compare_digest(given.strip().encode(), self.token.encode())

    def check_xsrf_cookie(self) -> None:
        """Token-authenticated JSON API: no cookies, so no XSRF to check."""

    def body(self, fields: dict[str, Field]) -> dict[str, Any]:
        return parse_body(self.request.body, fields)

    def write_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(payload))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, GatewayError):
            code, message = exc.code, exc.message
        elif isinstance(exc, tornado.web.HTTPError):
            code, message = STATUS_CODES.get(status_code, "http_error"), exc.log_message or self._reason
        else:
            code, message = "internal_error", f"the gateway failed: {exc!r}"
        self.set_header("Content-Type", "application/json")
        self.finish({"error": {"code": code, "message": message, "request_id": self.request_id}})

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, GatewayError) and value.status < 500:
            return  # the client's mistake, answered in the response
        super().log_exception(typ, value, tb)

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, GatewayError):
            status_code = exc.status
        super().send_error(status_code, **kwargs)


class HealthHandler(BaseHandler):
    public = True

    def get(self) -> None:
        self.write_json({"status": "ok", "version": __version__, "pools": self.service.stats()})


class OpenAPIHandler(BaseHandler):
    public = True

    def get(self) -> None:
        self.write_json(openapi_document())


class SandboxesHandler(BaseHandler):
    def get(self) -> None:
        self.write_json({"sandboxes": [s.describe() for s in self.service.list()]})

    async def post(self) -> None:
        body = self.body(CREATE_FIELDS)
        sandbox = await self.service.create(
            body.get("template", "python"), ttl=body.get("timeout"),
            env=body.get("env"), metadata=body.get("metadata"))
        self.set_header("Location", f"/api/v1/sandboxes/{sandbox.id}")
        self.write_json(sandbox.describe(), status=201)


class SandboxHandler(BaseHandler):
    def get(self, sandbox_id: str) -> None:
        self.write_json(self.service.get(sandbox_id).describe())

    async def delete(self, sandbox_id: str) -> None:
        await self.service.delete(sandbox_id)
        self.set_status(204)
        self.finish()


class InterruptHandler(BaseHandler):
    async def post(self, sandbox_id: str) -> None:
        await self.service.interrupt(sandbox_id)
        self.set_status(204)
        self.finish()


class RestartHandler(BaseHandler):
    async def post(self, sandbox_id: str) -> None:
        sandbox = await self.service.restart(sandbox_id)
        self.write_json(sandbox.describe())


class ExecuteHandler(BaseHandler):
    """Streams a cell's events as NDJSON, flushing each one as the kernel produces it.

    A client that disconnects mid-stream cancels the stream; the sandbox then interrupts the
    cell (documented policy, docs/api.md).
    """

    _task: asyncio.Task[Any] | None = None

    async def post(self, sandbox_id: str) -> None:
        body = self.body(EXECUTE_FIELDS)
        events = self.service.execute(sandbox_id, body["code"], body.get("timeout"))
        self._task = asyncio.current_task()
        self.set_header("Content-Type", "application/x-ndjson")
        self.set_header("Cache-Control", "no-store")
        try:
            async for event in events:
                self.write(json.dumps(event) + "\n")
                await self.flush()
        except (StreamClosedError, asyncio.CancelledError):
            log.info("client left an execution on %s; interrupting it", sandbox_id)
        finally:
            await events.aclose()
            self._task = None
        if not self._finished:
            self.finish()

    def on_connection_close(self) -> None:
        if self._task is not None:
            self._task.cancel()


class FallbackHandler(BaseHandler):
    public = True

    def prepare(self) -> None:
        super().prepare()
        raise NotFound(f"no route {self.request.method} {self.request.path}")


_ID = r"([^/]+)"
ROUTES: list[tuple[str, type[BaseHandler]]] = [
    (r"/api/v1/health", HealthHandler),
    (r"/api/v1/openapi.json", OpenAPIHandler),
    (r"/api/v1/sandboxes", SandboxesHandler),
    (rf"/api/v1/sandboxes/{_ID}", SandboxHandler),
    (rf"/api/v1/sandboxes/{_ID}/execute", ExecuteHandler),
    (rf"/api/v1/sandboxes/{_ID}/interrupt", InterruptHandler),
    (rf"/api/v1/sandboxes/{_ID}/restart", RestartHandler),
]


def make_app(service: SandboxService, token: str, max_body_size: int = 1 << 20
             ) -> tornado.web.Application:
    """The gateway's Tornado application: every route above, JSON 404 for the rest."""
    deps = {"service": service, "token": token, "max_body_size": max_body_size}
    handlers = [(pattern, handler, deps) for pattern, handler in ROUTES]
    return tornado.web.Application(handlers, default_handler_class=FallbackHandler,
                                   default_handler_args=deps)
