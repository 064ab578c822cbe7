"""Jupyter Server's REST surface on warm sandboxes: ``/api``, kernelspecs, kernels, sessions.

A kernel IS a sandbox: ``POST /api/kernels`` claims a warm one from the pool of the
kernelspec's template, ``DELETE`` destroys it, and its id names the same object on
``/api/v1/sandboxes`` (see :func:`~sandcell_gateway.jupyter_bridge.kernel_id_of` for the
spelling). Bodies and responses follow Jupyter Server's; unknown body fields are ignored, as
Jupyter Server ignores them.
"""

from __future__ import annotations

import uuid
from typing import Any

from . import __version__
from .base import BaseHandler
from .errors import BadRequest, NotFound
from .jupyter_bridge import JupyterState, find_sandbox, jupyter_state, kernel_id_of
from .jupyter_channels import KernelChannelsHandler
from .openapi import jupyter_swagger
from .sandbox import Sandbox
from .validation import ENV_NAME, ENV_VALUE, decode_object
from .service import SandboxService
from .wire import iso_time

DEFAULT_KERNEL = "python"
SESSION_FIELDS = ("path", "name", "type")
# The body fields the Jupyter routes read (top level, and inside "kernel" and "notebook"),
# with the JSON types Jupyter Server accepts; null means "not given".
BODY_TYPES: dict[str, type | tuple[type, ...]] = {
    "name": str, "path": str, "type": str, "id": str, "env": dict, "kernel": dict,
    "notebook": dict}


def check_types(body: dict[str, Any], types: dict[str, type | tuple[type, ...]],
                prefix: str = "") -> None:
    """:class:`BadRequest` for a known field of the wrong type (unknown fields are ignored)."""
    for name, expected in types.items():
        value = body.get(name)
        if value is not None and not isinstance(value, expected):
            raise BadRequest(f"field '{prefix}{name}' must be "
                             f"{'an object' if expected is dict else 'a string'}")


def kernelspec_model(name: str, image: str) -> dict[str, Any]:
    """One template as a Jupyter kernelspec (``GET /api/kernelspecs/{name}``)."""
    display = "Python 3 (Sandcell)" if name == DEFAULT_KERNEL else f"Python 3 (Sandcell {name})"
    return {"name": name, "resources": {},
            "spec": {"argv": [], "env": {}, "display_name": display, "language": "python",
                     "interrupt_mode": "message",
                     "metadata": {"sandcell": {"template": name, "image": image}}}}


def kernel_model(sandbox: Sandbox, state: JupyterState) -> dict[str, Any]:
    """Jupyter Server's kernel model: id, name, last_activity, execution_state, connections."""
    bridge = state.bridges.get(sandbox.id)
    last = max(sandbox.last_active, bridge.last_activity if bridge else 0.0)
    execution_state = "dead" if sandbox.dead else sandbox.kernel.execution_state
    return {"id": kernel_id_of(sandbox.id), "name": sandbox.template,
            "last_activity": iso_time(last), "execution_state": execution_state,
            "connections": len(bridge.clients) if bridge else 0}




def kernel_env(env: Any) -> dict[str, str]:
    """Only ``KERNEL_*`` variables reach the kernel, as Jupyter Kernel Gateway does; Jupyter
    Server sends many others, so the rest are dropped, not refused."""
    if not isinstance(env, dict):
        return {}
    return {k: v for k, v in env.items()
            if isinstance(k, str) and k.startswith("KERNEL_") and ENV_NAME.fullmatch(k)
            and isinstance(v, str) and ENV_VALUE.fullmatch(v)}


def template_for(service: SandboxService, name: str | None) -> str:
    """The template a kernelspec name asks for.

    ``python3`` (what most notebooks' metadata say) means the default template unless a template
    has that name, so existing notebooks run unchanged.
    """
    if not name or (name == "python3" and name not in service.pools):
        return DEFAULT_KERNEL
    return name


class JupyterHandler(BaseHandler):
    """A Jupyter REST route: lenient JSON bodies, the Jupyter state at hand."""

    def initialize(self, deps: Any) -> None:
        super().initialize(deps)
        self.jupyter = jupyter_state(self.service)

    def json_body(self) -> dict[str, Any]:
        """The body as a JSON object whose known fields have the types Jupyter Server sends."""
        body = decode_object(self.raw_body())
        check_types(body, BODY_TYPES)
        for name in ("kernel", "notebook"):
            check_types(body.get(name) or {}, BODY_TYPES, prefix=f"{name}.")
        return body

    def model(self, sandbox: Sandbox) -> dict[str, Any]:
        return kernel_model(sandbox, self.jupyter)

    def find_sandbox(self, kernel_id: str) -> Sandbox:
        return find_sandbox(self.service, kernel_id, self.tenant)

    async def start_kernel(self, name: str | None, env: Any = None) -> Sandbox:
        """Claim a warm sandbox of the kernelspec's template (the tenant's caps and rates apply)."""
        template = template_for(self.service, name)
        if template not in self.service.pools:
            raise NotFound(f"no kernelspec {template!r}; available: "
                           f"{', '.join(sorted(self.service.pools))}")
        return await self.service.create(self.tenant, template, env=kernel_env(env))

    def no_content(self) -> None:
        self.set_status(204)
        self.finish()


class ApiVersionHandler(JupyterHandler):
    def get(self) -> None:
        self.write_json({"version": __version__})


class SwaggerJSONHandler(BaseHandler):
    """The Jupyter routes' OpenAPI document, where Kernel Gateway's tools fetch it. No token,
    as ``/api/v1/openapi.json``: it describes the API, no tenant's data."""

    public = True
    media_type = "application/json"

    def get(self) -> None:
        self.set_header("Content-Type", self.media_type)
        self.finish(jupyter_swagger(self.media_type))


class SwaggerYAMLHandler(SwaggerJSONHandler):
    media_type = "application/yaml"


class KernelSpecsHandler(JupyterHandler):
    def get(self) -> None:
        specs = {name: kernelspec_model(name, pool.template.image)
                 for name, pool in self.service.pools.items()}
        default = DEFAULT_KERNEL if DEFAULT_KERNEL in specs else next(iter(specs), "")
        self.write_json({"default": default, "kernelspecs": specs})


class KernelSpecHandler(JupyterHandler):
    def get(self, name: str) -> None:
        pool = self.service.pools.get(name)
        if pool is None:
            raise NotFound(f"no kernelspec {name!r}")
        self.write_json(kernelspec_model(name, pool.template.image))


class KernelsHandler(JupyterHandler):
    def get(self) -> None:
        self.write_json([self.model(s) for s in self.service.list(self.tenant)])

    async def post(self) -> None:
        body = self.json_body()
        sandbox = await self.start_kernel(body.get("name"), body.get("env"))
        model = self.model(sandbox)
        self.set_header("Location", f"/api/kernels/{model['id']}")
        self.write_json(model, status=201)


class KernelHandler(JupyterHandler):
    def get(self, kernel_id: str) -> None:
        self.write_json(self.model(self.find_sandbox(kernel_id)))

    async def delete(self, kernel_id: str) -> None:
        await self.service.delete(self.find_sandbox(kernel_id).id, self.tenant)
        self.no_content()


class KernelInterruptHandler(JupyterHandler):
    async def post(self, kernel_id: str) -> None:
        await self.service.interrupt(self.find_sandbox(kernel_id).id, self.tenant)
        self.no_content()


class KernelRestartHandler(JupyterHandler):
    """Swaps in a fresh warm kernel under the same id; open WebSockets stay connected."""

    async def post(self, kernel_id: str) -> None:
        sandbox = await self.service.restart(self.find_sandbox(kernel_id).id, self.tenant)
        self.write_json(self.model(sandbox))


class SessionStoreHandler(JupyterHandler):
    """What the session routes share: a session names a notebook (path) and its kernel."""

    async def create_session(self, body: dict[str, Any], path: str | None) -> dict[str, Any]:
        kernel = body.get("kernel") or {}
        if kernel.get("id"):
            sandbox = self.find_sandbox(kernel["id"])
        else:
            sandbox = await self.start_kernel(kernel.get("name"), kernel.get("env"))
        session = {"id": str(uuid.uuid4()), "path": path or "", "name": body.get("name", ""),
                   "type": body.get("type", "notebook"), "sandbox_id": sandbox.id,
                   "tenant": self.tenant.name}
        await self.jupyter.save_session(session)
        return session

    def live_sessions(self) -> list[dict[str, str]]:
        """The tenant's sessions whose kernel still exists (a deleted kernel ends its session;
        the store forgets it with the sandbox's history)."""
        alive = {s.id for s in self.service.list(self.tenant)}
        mine = {k: s for k, s in self.jupyter.sessions.items() if s["tenant"] == self.tenant.name}
        for session_id, session in mine.items():
            if session["sandbox_id"] not in alive:
                del self.jupyter.sessions[session_id]
        return [s for s in mine.values() if s["sandbox_id"] in alive]

    def session_model(self, session: dict[str, Any]) -> dict[str, Any]:
        sandbox = self.service.get(session["sandbox_id"], self.tenant)
        return {"id": session["id"], "path": session["path"], "name": session["name"],
                "type": session["type"], "kernel": self.model(sandbox),
                "notebook": {"path": session["path"], "name": session["name"]}}

    def find(self, session_id: str) -> dict[str, Any]:
        for session in self.live_sessions():
            if session["id"] == session_id:
                return session
        raise NotFound(f"no session {session_id!r}")


class SessionsHandler(SessionStoreHandler):
    def get(self) -> None:
        self.write_json([self.session_model(s) for s in self.live_sessions()])

    async def post(self) -> None:
        body = self.json_body()
        path = body.get("path") or (body.get("notebook") or {}).get("path")
        existing = [s for s in self.live_sessions() if path and s["path"] == path]
        session = existing[0] if existing else await self.create_session(body, path)
        model = self.session_model(session)
        self.set_header("Location", f"/api/sessions/{model['id']}")
        self.write_json(model, status=201)


class SessionHandler(SessionStoreHandler):
    def get(self, session_id: str) -> None:
        self.write_json(self.session_model(self.find(session_id)))

    async def patch(self, session_id: str) -> None:
        session = self.find(session_id)
        body = self.json_body()
        session.update({k: body[k] for k in SESSION_FIELDS if isinstance(body.get(k), str)})
        await self._switch_kernel(session, body.get("kernel") or {})
        await self.jupyter.save_session(session)
        self.write_json(self.session_model(session))

    async def _switch_kernel(self, session: dict[str, Any], kernel: dict[str, Any]) -> None:
        if kernel.get("id"):
            session["sandbox_id"] = self.find_sandbox(kernel["id"]).id
        elif kernel.get("name"):
            old = session["sandbox_id"]
            session["sandbox_id"] = (await self.start_kernel(kernel["name"])).id
            await self.service.delete(old, self.tenant)  # as Jupyter Server, stop the old kernel

    async def delete(self, session_id: str) -> None:
        session = self.find(session_id)
        await self.jupyter.delete_session(session_id)
        try:
            await self.service.delete(session["sandbox_id"], self.tenant)
        except NotFound:
            pass  # the kernel was already deleted
        self.no_content()


_ID = r"([^/]+)"
ROUTES: list[tuple[str, type[BaseHandler]]] = [
    (r"/api", ApiVersionHandler),
    (r"/api/swagger\.json", SwaggerJSONHandler),
    (r"/api/swagger\.yaml", SwaggerYAMLHandler),
    (r"/api/kernelspecs", KernelSpecsHandler),
    (rf"/api/kernelspecs/{_ID}", KernelSpecHandler),
    (r"/api/kernels", KernelsHandler),
    (rf"/api/kernels/{_ID}", KernelHandler),
    (rf"/api/kernels/{_ID}/interrupt", KernelInterruptHandler),
    (rf"/api/kernels/{_ID}/restart", KernelRestartHandler),
    (rf"/api/kernels/{_ID}/channels", KernelChannelsHandler),
    (r"/api/sessions", SessionsHandler),
    (rf"/api/sessions/{_ID}", SessionHandler),
]
