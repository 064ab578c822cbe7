"""E2B's control plane (``E2B_API_URL`` = ``<gateway>/e2b/api``) over :class:`SandboxService`.

Create claims a warm sandbox of the Sandcell template the E2B template id maps to
(``[gateway.e2b] aliases``); get, list, kill, set timeout and connect act on the caller's
sandboxes only. What Sandcell cannot do (pause, snapshots, volumes, MCP, network rules) is
refused with 400 naming the field, not silently dropped.
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import BadRequest
from ..sandbox import Sandbox
from ..validation import ENV_NAME, ENV_VALUE, MAX_SECONDS, Field
from . import models
from .base import E2BHandler

CREATE_FIELDS = {
    "templateID": Field(str, required=True),
    "timeout": Field(int, minimum=1, maximum=MAX_SECONDS),
    "metadata": Field(dict, items=str),
    "envVars": Field(dict, items=str, key_pattern=ENV_NAME, value_pattern=ENV_VALUE),
    "autoPause": Field(bool), "autoPauseMemory": Field(bool), "autoResume": Field(dict),
    "allow_internet_access": Field(bool), "network": Field(dict), "mcp": Field(dict),
    "iam": Field(dict), "volumeMounts": Field(list),
}
# asked for, these change what the sandbox is; Sandcell has no such thing, so it says so
UNSUPPORTED = {"autoPause": "pausing sandboxes", "autoResume": "pausing sandboxes",
               "network": "network rules", "mcp": "the MCP gateway", "iam": "workload identity",
               "volumeMounts": "volumes"}
TIMEOUT_FIELDS = {"timeout": Field(int, required=True, minimum=0, maximum=MAX_SECONDS)}
CONNECT_FIELDS = {"timeout": Field(int, minimum=0, maximum=MAX_SECONDS), "memory": Field(bool)}


def check_supported(body: dict[str, Any]) -> None:
    for name, what in UNSUPPORTED.items():
        if body.get(name):
            raise BadRequest(f"field {name!r}: Sandcell has no {what} (docs/e2b.md)")
    if body.get("allow_internet_access"):
        raise BadRequest("field 'allow_internet_access': Sandcell sandboxes have no network "
                         "unless their template's limits give one (docs/e2b.md)")


class ControlHandler(E2BHandler):
    def template_of(self, sandbox: Sandbox) -> Any:
        return self.service.templates[sandbox.template]


class SandboxesHandler(ControlHandler):
    """POST ``/v2/sandboxes`` (and v1 ``/sandboxes``): create. GET: the caller's sandboxes."""

    async def post(self) -> None:
        body = self.body(CREATE_FIELDS)
        check_supported(body)
        sandbox = await self.service.create(
            self.tenant, self.deps.e2b.template(body["templateID"]),
            ttl=body.get("timeout"), env=body.get("envVars"), metadata=body.get("metadata"))
        self.write_json(models.created(sandbox, self.token), status=201)

    def get(self) -> None:
        self.write_json([models.listed(s, self.template_of(s))
                         for s in self.service.list(self.tenant)])


class SandboxHandler(ControlHandler):
    """GET ``/sandboxes/{id}``: its detail. DELETE: kill it (404 the second time)."""

    def get(self, sandbox_id: str) -> None:
        sandbox = self.service.get(sandbox_id, self.tenant)
        self.write_json(models.detail(sandbox, self.template_of(sandbox), self.token))

    async def delete(self, sandbox_id: str) -> None:
        await self.service.delete(sandbox_id, self.tenant)
        self.set_status(204)
        self.finish()


class TimeoutHandler(ControlHandler):
    """POST ``/sandboxes/{id}/timeout``: the sandbox ends ``timeout`` s from now."""

    def post(self, sandbox_id: str) -> None:
        seconds = self.body(TIMEOUT_FIELDS)["timeout"]
        self.service.set_timeout(sandbox_id, self.tenant, seconds)
        self.set_status(204)
        self.finish()


class ConnectHandler(ControlHandler):
    """POST ``/v2/sandboxes/{id}/connect``: a running sandbox's credentials; ``timeout`` may
    only lengthen its life, as on E2B. Nothing is ever paused, so nothing resumes."""

    def post(self, sandbox_id: str) -> None:
        timeout = self.body(CONNECT_FIELDS).get("timeout")
        sandbox = self.service.get(sandbox_id, self.tenant)
        if timeout and time.time() + timeout > sandbox.expires_at:
            self.service.set_timeout(sandbox_id, self.tenant, timeout)
        self.write_json(models.created(sandbox, self.token))


_ID = r"([^/]+)"
ROUTES: list[tuple[str, type[E2BHandler]]] = [
    (r"/e2b/api/v2/sandboxes", SandboxesHandler),
    (r"/e2b/api/sandboxes", SandboxesHandler),
    (rf"/e2b/api/sandboxes/{_ID}", SandboxHandler),
    (rf"/e2b/api/sandboxes/{_ID}/timeout", TimeoutHandler),
    (rf"/e2b/api/v2/sandboxes/{_ID}/connect", ConnectHandler),
    (rf"/e2b/api/sandboxes/{_ID}/connect", ConnectHandler),
]
