"""Tornado handlers for ``/api/v1/sandboxes``: parse, call the service, serialise."""

from __future__ import annotations

from . import __version__
from .base import BaseHandler
from .cells import CellEnd
from .openapi import openapi_document
from .streaming import EventStreamHandler
from .validation import ENV_NAME, ENV_VALUE, MAX_SECONDS, Field

CREATE_FIELDS = {
    "template": Field(str),
    "timeout": Field((int, float), minimum=1, maximum=MAX_SECONDS),
    "env": Field(dict, items=str, key_pattern=ENV_NAME, value_pattern=ENV_VALUE),
    "metadata": Field(dict, items=str),
}
EXECUTE_FIELDS = {
    "code": Field(str, required=True),
    "timeout": Field((int, float), minimum=0.001, maximum=MAX_SECONDS, nullable=True),
}


class HealthHandler(BaseHandler):
    """200 while the gateway serves; ``status`` says ``degraded`` while Docker is unreachable
    (warm sandboxes still run code then, but none can start)."""

    public = True

    async def get(self) -> None:
        plugins = self.deps.plugins.stats() if self.deps.plugins is not None else {}
        docker = await self.service.docker_status()
        self.write_json({"status": "ok" if docker["reachable"] else "degraded",
                         "version": __version__, "docker": docker,
                         "pools": self.service.stats(), "plugins": plugins})


class OpenAPIHandler(BaseHandler):
    public = True

    def get(self) -> None:
        plugins = self.deps.plugins
        self.write_json(openapi_document(
            templates=sorted(self.service.templates),
            plugins=sorted(m.name for m in plugins.registry.list()) if plugins else None))


class SandboxesHandler(BaseHandler):
    def get(self) -> None:
        self.write_json({"sandboxes": [s.describe() for s in self.service.list(self.tenant)]})

    async def post(self) -> None:
        body = self.body(CREATE_FIELDS)
        sandbox = await self.service.create(
            self.tenant, body.get("template", "python"), ttl=body.get("timeout"),
            env=body.get("env"), metadata=body.get("metadata"))
        self.log_context.sandbox_id = sandbox.id  # the access line names what was created
        self.set_header("Location", f"/api/v1/sandboxes/{sandbox.id}")
        self.write_json(sandbox.describe(), status=201)


class SandboxHandler(BaseHandler):
    def get(self, sandbox_id: str) -> None:
        self.write_json(self.service.get(sandbox_id, self.tenant).describe())

    async def delete(self, sandbox_id: str) -> None:
        await self.service.delete(sandbox_id, self.tenant)
        self.set_status(204)
        self.finish()


class InterruptHandler(BaseHandler):
    async def post(self, sandbox_id: str) -> None:
        await self.service.interrupt(sandbox_id, self.tenant)
        self.set_status(204)
        self.finish()


class RestartHandler(BaseHandler):
    async def post(self, sandbox_id: str) -> None:
        sandbox = await self.service.restart(sandbox_id, self.tenant)
        self.write_json(sandbox.describe())


class NotebookHandler(BaseHandler):
    """The sandbox's history as a ``.ipynb`` (also for a while after the sandbox is deleted)."""

    async def get(self, sandbox_id: str) -> None:
        notebook = await self.service.notebook(sandbox_id, self.tenant)
        self.set_header("Content-Disposition", f'inline; filename="{sandbox_id}.ipynb"')
        self.write_json(notebook)


class ExecuteHandler(EventStreamHandler):
    """Streams a cell's events as NDJSON (streaming.py); a client that disconnects mid-stream
    cancels it, and the sandbox then interrupts the cell (documented policy, docs/api.md)."""

    async def post(self, sandbox_id: str) -> None:
        body = self.body(EXECUTE_FIELDS)
        events = self.service.execute(sandbox_id, self.tenant, body["code"],
                                     body.get("timeout"))
        end = CellEnd()
        await self.stream(events, last=end.see, hold=lambda: end.ending,
                          left=f"client left an execution on {sandbox_id}; interrupting it")


_ID = r"([^/]+)"
ROUTES: list[tuple[str, type[BaseHandler]]] = [
    (r"/api/v1/health", HealthHandler),
    (r"/api/v1/openapi.json", OpenAPIHandler),
    (r"/api/v1/sandboxes", SandboxesHandler),
    (rf"/api/v1/sandboxes/{_ID}", SandboxHandler),
    (rf"/api/v1/sandboxes/{_ID}/execute", ExecuteHandler),
    (rf"/api/v1/sandboxes/{_ID}/interrupt", InterruptHandler),
    (rf"/api/v1/sandboxes/{_ID}/restart", RestartHandler),
    (rf"/api/v1/sandboxes/{_ID}/notebook", NotebookHandler),
]
