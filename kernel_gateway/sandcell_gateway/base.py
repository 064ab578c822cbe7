"""The base of every gateway handler: token auth (to a tenant), JSON bodies, one JSON
``write_error``, CORS headers and ``OPTIONS``."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import tornado.http1connection
import tornado.httputil
import tornado.iostream
import tornado.log
import tornado.web

from .config import E2BConfig
from .cors import CorsPolicy
from .errors import (GatewayError, NotFound, PayloadTooLarge, ServiceUnavailable, TooManyRequests,
                     Unauthorized)
from .lingering import half_close
from .ops import logs
from .service import SandboxService
from .tenants import Tenant, Tenants
from .validation import Field, parse_body
from .wire import is_sandbox_id

if TYPE_CHECKING:
    from .command_service import CommandService
    from .files import FileService
    from .jupyter_service import JupyterService
    from .plugins.service import PluginService

log = logging.getLogger(__name__)

STATUS_CODES = {400: "invalid_request", 401: "unauthorized", 404: "not_found",
                405: "method_not_allowed", 413: "body_too_large", 429: "rate_limited"}


# An early refusal's unread request body is read and dropped up to this size, so the
# keep-alive connection stays usable; past it (or when chunked) the response says
# "Connection: close" instead.
DRAIN_LIMIT = 1 << 30


def settle_unread_body(request: tornado.httputil.HTTPServerRequest,
                       handler: tornado.web.RequestHandler) -> tornado.iostream.IOStream | None:
    """Keep the connection of a request answered before its body was read usable.

    An error raised before the handler method (401 in ``prepare``, an unknown route, a path
    that is not UTF-8, a 413) finishes the response before tornado has read the body. Tornado
    then closes the socket with the body still unread, which makes the kernel send a reset,
    and its response does not say ``Connection: close``: a pooling client sends its next
    request on a dead connection and gets ``ECONNRESET``. So tornado reads on and drops the
    body instead. A declared body is drained and the connection kept. A body with no declared
    end (chunked, or past ``DRAIN_LIMIT``) gets an honest ``Connection: close``; its stream
    is then returned, for the caller to half-close once the response is out (lingering.py).
    """
    connection = request.connection
    if not isinstance(connection, tornado.http1connection.HTTP1Connection) \
            or connection._read_finished:
        return None
    declared = request.headers.get("Content-Length", "0")
    undrainable = bool(request.headers.get("Transfer-Encoding")) or not declared.isdigit() \
        or int(declared) > DRAIN_LIMIT
    if undrainable:
        handler.set_header("Connection", "close")
    # this request's cap only: tornado makes a connection object per request
    connection.set_max_body_size(int(declared) if declared.isdigit() and int(declared) > 0
                                 else DRAIN_LIMIT)
    # Read "finished" for finish()'s purpose: tornado goes on reading the body, drops it (the
    # response is written) and then serves the connection's next request.
    connection._read_finished = True
    return connection.stream if undrainable else None


@dataclasses.dataclass
class Deps:
    """What handlers need; passed to every handler's ``initialize``."""

    service: SandboxService
    tenants: Tenants
    jupyter: JupyterService
    max_body_size: int = 1 << 20
    websocket_max_message_size: int = 10 << 20
    plugins: PluginService | None = None  # None: the plugin runtime is disabled
    cors: CorsPolicy = dataclasses.field(default_factory=CorsPolicy)  # default: CORS off
    files: FileService | None = None  # files in sandboxes, through their agents
    commands: CommandService | None = None  # commands in sandboxes, through their agents
    e2b: E2BConfig = dataclasses.field(default_factory=E2BConfig)  # the /e2b surface (docs/e2b.md)


@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler):
    """JSON in, JSON out, Bearer auth, one ``write_error`` for every failure.

    After ``prepare``, ``self.tenant`` is the tenant the token belongs to (None on public
    routes); handlers pass it to the services, which enforce isolation and limits.
    ``OPTIONS`` needs no token on any route: browsers send their CORS preflight without one.
    """

    public = False  # True for routes that need no token
    tenant: Tenant

    def initialize(self, deps: Deps) -> None:
        self.deps = deps
        self.service = deps.service
        self.max_body_size = deps.max_body_size
        self._body = bytearray()
        self._body_overflow = False
        self._set_cors_headers()

    def set_default_headers(self) -> None:
        # runs again when an error clears the headers, so errors carry the same id and CORS
        # headers (a page can read the error); the first run comes before initialize()
        if not hasattr(self, "request_id"):  # the client's, to follow its request through
            self.request_id = logs.request_id_for(self.request.headers.get("X-Request-Id"))
        self.set_header("X-Request-Id", self.request_id)
        if hasattr(self, "deps"):
            self._set_cors_headers()

    def _set_cors_headers(self) -> None:
        origin = self.request.headers.get("Origin")
        for name, value in self.deps.cors.response_headers(origin).items():
            self.set_header(name, value)

    def prepare(self) -> None:
        # what this request logs from here on (in its own task) names it, its tenant, its sandbox
        self.log_context = logs.enter_request(self.request_id)
        self.log_context.sandbox_id = next(
            (arg for arg in self.path_args if is_sandbox_id(arg)), None)
        connection = self.request.connection
        if isinstance(connection, tornado.http1connection.HTTP1Connection):
            # small answers go out at once (Nagle + delayed ACKs cost ~40 ms each)
            connection.stream.set_nodelay(True)
        tenant = self._authenticate()
        if tenant is not None:
            self.tenant = tenant
            self.log_context.tenant = tenant.name
        elif not self.public and self.request.method != "OPTIONS":
            raise Unauthorized("missing or wrong token: send 'Authorization: Bearer <token>' "
                               "(the gateway prints its token at start)")
        declared = self.request.headers.get("Content-Length",
                                            "")  # pragma: no mutate (any non-digit: none)
        if declared.isdigit() and int(declared) > self.max_body_size:
            # finish() decides what happens to the unread body; tornado never hands it to
            # data_received once the request is answered
            raise self._too_large()

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        """Bodies stream in here (bounded), so no size gets past without a JSON 413."""
        if self._body_overflow:
            return None
        self._body += chunk
        if len(self._body) > self.max_body_size:  # a chunked body without Content-Length
            self._body_overflow, self._body = True, bytearray()
        return None

    def raw_body(self) -> bytes:
        if self._body_overflow:
            raise self._too_large()
        return bytes(self._body)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body over {self.max_body_size} bytes "
                               "([gateway] max_body_size)")

    def _authenticate(self) -> Tenant | None:
        """``Authorization: Bearer|token <t>``, or ``?token=<t>`` (WebSocket clients send that)."""
        # The defaults need only be no scheme and no tenant's token: "XXXX" would do as well.
        header = self.request.headers.get("Authorization",
                                          "")  # pragma: no mutate
        scheme, _, given = header.partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            given = self.get_query_argument("token",
                                            "")  # pragma: no mutate
        return self.deps.tenants.authenticate(given.strip())

    def check_xsrf_cookie(self) -> None:
        """Token-authenticated JSON API: no cookies, so no XSRF to check."""

    def body(self, fields: dict[str, Field]) -> dict[str, Any]:
        return parse_body(self.raw_body(), fields)

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> Any:
        closing = settle_unread_body(self.request, self)
        flushed = super().finish(chunk)
        if closing is not None:
            flushed.add_done_callback(lambda _: half_close(closing))
        return flushed

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
        if status_code == 405:
            self.set_allow_header()
        if isinstance(exc, TooManyRequests):
            self.set_header("Retry-After", str(exc.retry_after))
        self.set_header("Content-Type", "application/json")
        self.finish({"error": {"code": code, "message": message, "request_id": self.request_id}})

    def options(self, *args: str) -> None:
        """What the route allows (``Allow``); to a CORS preflight from an allowed origin, also
        what the page may send. Without a token: the browser sends none on a preflight."""
        self.set_allow_header()
        if self.request.headers.get("Access-Control-Request-Method"):
            origin = self.request.headers.get("Origin")
            for name, value in self.deps.cors.preflight_headers(
                    origin, self.allowed_methods()).items():
                self.set_header(name, value)
        self.set_status(204)
        self.finish()

    def set_allow_header(self) -> None:
        self.set_header("Allow", ", ".join(self.allowed_methods()))

    def allowed_methods(self) -> list[str]:
        """The methods this handler implements (RFC 9110: a 405 must list them)."""
        base = tornado.web.RequestHandler
        return [m for m in self.SUPPORTED_METHODS
                if getattr(type(self), m.lower(), None) is not getattr(base, m.lower(), None)]

    def _request_summary(self) -> str:
        # tornado's lines for uncaught exceptions and HTTP errors name the request so; its URI
        # may carry a WebSocket client's ?token=
        request = self.request
        return f"{request.method} {logs.redact_uri(request.uri or '')} ({request.remote_ip})"

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, GatewayError) and value.status < 500:
            return  # the client's mistake, answered in the response
        if isinstance(value, ServiceUnavailable):  # expected under load or an outage: no traceback
            log.warning("%s %s: %s", self.request.method, self.request.path, value.message)
            return
        if isinstance(value, tornado.web.HTTPError):  # one line naming _request_summary()
            super().log_exception(typ, value, tb)
            return
        # tornado's own line adds repr(self.request), whose URI is not redacted
        tornado.log.app_log.error("Uncaught exception %s", self._request_summary(),
                                  exc_info=(typ, value, tb))

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, GatewayError):
            status_code = exc.status
        super().send_error(status_code, **kwargs)


class FallbackHandler(BaseHandler):
    public = True

    def prepare(self) -> None:
        super().prepare()
        raise NotFound(f"no route {self.request.method} {self.request.path}")


