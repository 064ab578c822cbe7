"""Jupyter Server's REST surface on warm sandboxes: ``/api``, kernelspecs, kernels, sessions.

A kernel IS a sandbox: ``POST /api/kernels`` claims a warm one from the pool of the
kernelspec's template, ``DELETE`` destroys it, and its id names the same object on
``/api/v1/sandboxes`` (see :func:`~sandcell_gateway.wire.kernel_id_of` for the
spelling). Bodies and responses follow Jupyter Server's; unknown body fields are ignored, as
Jupyter Server ignores them.
"""

from __future__ import annotations

from typing import Any

from . import __version__
from .base import BaseHandler
from .errors import BadRequest, NotFound
from .jupyter_channels import KernelChannelsHandler
from .jupyter_service import DEFAULT_KERNEL, JupyterService
from .openapi import jupyter_swagger
from .sandbox import Sandbox
from .validation import decode_object

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


class JupyterHandler(BaseHandler):
    """A Jupyter REST route: lenient JSON bodies, the Jupyter service at hand."""

    @property
    def jupyter(self) -> JupyterService:
        return self.deps.jupyter

    def json_body(self) -> dict[str, Any]:
        """The body as a JSON object whose known fields have the types Jupyter Server sends."""
        body = decode_object(self.raw_body())
        check_types(body, BODY_TYPES)
        for name in ("kernel", "notebook"):
            check_types(body.get(name) or {}, BODY_TYPES, prefix=f"{name}.")
        return body

    def model(self, sandbox: Sandbox) -> dict[str, Any]:
        return self.jupyter.kernel_model(sandbox)

    def find_sandbox(self, kernel_id: str) -> Sandbox:
        return self.jupyter.find(kernel_id, self.tenant)

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
        specs = {name: kernelspec_model(name, template.image)
                 for name, template in self.service.templates.items()}
        default = DEFAULT_KERNEL if DEFAULT_KERNEL in specs else next(iter(specs), "")
        self.write_json({"default": default, "kernelspecs": specs})


class KernelSpecHandler(JupyterHandler):
    def get(self, name: str) -> None:
        template = self.service.templates.get(name)
        if template is None:
            raise NotFound(f"no kernelspec {name!r}")
        self.write_json(kernelspec_model(name, template.image))


class KernelsHandler(JupyterHandler):
    def get(self) -> None:
        self.write_json([self.model(s) for s in self.service.list(self.tenant)])

    async def post(self) -> None:
        body = self.json_body()
        sandbox = await self.jupyter.start_kernel(self.tenant, body.get("name"), body.get("env"))
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


class SessionsHandler(JupyterHandler):
    def get(self) -> None:
        self.write_json([self.jupyter.session_model(self.tenant, s)
                         for s in self.jupyter.sessions(self.tenant)])

    async def post(self) -> None:
        session = await self.jupyter.open_session(self.tenant, self.json_body())
        self.set_header("Location", f"/api/sessions/{session['id']}")
        self.write_json(self.jupyter.session_model(self.tenant, session), status=201)


class SessionHandler(JupyterHandler):
    def get(self, session_id: str) -> None:
        session = self.jupyter.session(self.tenant, session_id)
        self.write_json(self.jupyter.session_model(self.tenant, session))

    async def patch(self, session_id: str) -> None:
        self.jupyter.session(self.tenant, session_id)  # an unknown session: 404 before the body
        session = await self.jupyter.update_session(self.tenant, session_id, self.json_body())
        self.write_json(self.jupyter.session_model(self.tenant, session))

    async def delete(self, session_id: str) -> None:
        await self.jupyter.close_session(self.tenant, session_id)
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
