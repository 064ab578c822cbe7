"""The base of every gateway handler: token auth, JSON bodies, one JSON ``write_error``."""

from __future__ import annotations

import dataclasses
import hmac
import json
import uuid
from typing import TYPE_CHECKING, Any

import tornado.web

from .errors import GatewayError, NotFound, PayloadTooLarge, Unauthorized
from .service import SandboxService
from .validation import Field, parse_body

if TYPE_CHECKING:
    from .plugins.service import PluginService

STATUS_CODES = {400: "invalid_request", 401: "unauthorized", 404: "not_found",
                405: "method_not_allowed", 413: "body_too_large"}


@dataclasses.dataclass
class Deps:
    """What handlers need; passed to every handler's ``initialize``."""

    service: SandboxService
    token: str
    max_body_size: int = 1 << 20
    plugins: PluginService | None = None  # None: the plugin runtime is disabled


class BaseHandler(tornado.web.RequestHandler):
    """JSON in, JSON out, Bearer auth, one ``write_error`` for every failure."""

    public = False  # True for routes that need no token

    def initialize(self, deps: Deps) -> None:
        self.deps = deps
        self.service = deps.service
        self.token = deps.token
        self.max_body_size = deps.max_body_size

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
        """``Authorization: Bearer|token <t>``, or ``?token=<t>`` (WebSocket clients send that)."""
        scheme, _, given = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            given = self.get_query_argument("token", "")
        return bool(given) and hmac.compare_digest(given.strip().encode(), self.token.encode())

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
        if status_code == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        self.set_header("Content-Type", "application/json")
        self.finish({"error": {"code": code, "message": message, "request_id": self.request_id}})

    def allowed_methods(self) -> list[str]:
        """The methods this handler implements (RFC 9110: a 405 must list them)."""
        base = tornado.web.RequestHandler
        return [m for m in self.SUPPORTED_METHODS
                if getattr(type(self), m.lower(), None) is not getattr(base, m.lower(), None)]

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, GatewayError) and value.status < 500:
            return  # the client's mistake, answered in the response
        super().log_exception(typ, value, tb)

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


