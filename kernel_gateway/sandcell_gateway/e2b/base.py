"""The base of every E2B-facing handler: E2B's credentials mapped to a Sandcell tenant, and
E2B's error shape.

The control plane gets the API key in ``X-API-KEY``; sandbox requests carry the envd access
token (``X-Access-Token``) or the traffic token (``E2B-Traffic-Access-Token``), which the
control plane handed out as the same key (models.created). Either way the key is a Sandcell
tenant token, so tenants, caps and 429s apply, and another tenant's sandbox is not found.
Sandbox requests name their sandbox and port in ``E2b-Sandbox-Id`` / ``E2b-Sandbox-Port``.
"""

from __future__ import annotations

from typing import Any

from ..base import BaseHandler
from ..errors import BadRequest, GatewayError, NotFound, TooManyRequests
from ..sandbox import Sandbox
from ..tenants import Tenant

ENVD_PORT = 49983
INTERPRETER_PORT = 49999


class SandboxGone(GatewayError):
    """E2B's proxy answers 502 "... was not found" for a sandbox that is not there; the SDK
    reads that message as ``SandboxNotRunningException`` (``is_running()`` as False)."""

    status = 502
    code = "sandbox_not_found"


class E2BHandler(BaseHandler):
    """Errors as E2B's API writes them: ``{"code": <HTTP status>, "message"}``."""

    def _authenticate(self) -> Tenant | None:
        if self.token:
            return self.deps.tenants.authenticate(self.token)
        return super()._authenticate()

    @property
    def token(self) -> str:
        """The key this request came with (the first of E2B's headers that holds one): the
        envd token handed back to the SDK."""
        for header in ("X-API-KEY", "X-Access-Token", "E2B-Traffic-Access-Token"):
            given = self.request.headers.get(header, "").strip()
            if given:
                return given
        return ""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.message if isinstance(exc, GatewayError) else self._reason
        if isinstance(exc, TooManyRequests):  # the SDK waits this long before its retry
            self.set_header("Retry-After", str(exc.retry_after))
        self.set_header("Content-Type", "application/json")
        self.finish({"code": status_code, "message": message, "request_id": self.request_id})


class SandboxRequestHandler(E2BHandler):
    """A request to one sandbox, routed by header: ``self.sandbox`` is the caller's sandbox."""

    port = ENVD_PORT
    sandbox: Sandbox

    def prepare(self) -> None:
        super().prepare()
        if self.request.method == "OPTIONS":
            return
        sandbox_id = self.request.headers.get("E2b-Sandbox-Id", "")
        if not sandbox_id:
            raise BadRequest("missing header E2b-Sandbox-Id (set E2B_SANDBOX_URL to this "
                             "gateway's /e2b/sbx)")
        port = self.request.headers.get("E2b-Sandbox-Port", str(self.port))
        if port != str(self.port):
            raise NotFound(f"nothing serves {self.request.path} on port {port} of a Sandcell "
                           f"sandbox (envd is {ENVD_PORT}, the code interpreter "
                           f"{INTERPRETER_PORT})")
        try:
            self.sandbox = self.service.get(sandbox_id, self.tenant)
        except NotFound:
            raise SandboxGone(f"The sandbox {sandbox_id} was not found") from None
        self.sandbox.touch()
