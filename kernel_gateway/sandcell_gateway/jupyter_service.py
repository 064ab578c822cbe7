"""The Jupyter surface's own state and rules: kernels (which are sandboxes), sessions, and
the bridges of connected WebSockets. No HTTP in here; the handlers in jupyter_api.py and
jupyter_channels.py parse, call this, and write.

A kernel IS a sandbox: starting one claims a warm sandbox of the kernelspec's template, and
its id names the same object on ``/api/v1/sandboxes`` (spelled as wire.kernel_id_of
says). A session names a notebook (its path) and its kernel; sessions are kept in the store,
so they survive a gateway crash with their re-adopted sandboxes.

Example::

    jupyter = JupyterService(service, store)  # the store the sandbox service writes to
    await jupyter.load_sessions()
    sandbox = await jupyter.start_kernel(tenant, "python3")
    session = await jupyter.open_session(tenant, {"path": "a.ipynb"})
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from .errors import NotFound, TooManyRequests
from .jupyter_bridge import Client, KernelBridge
from .jupyter_history import JupyterHistory
from .jupyter_messages import refusal
from .kernel import KernelConnection
from .sandbox import Sandbox
from .service import SandboxService
from .store import HistoryStore, remember
from .tenants import Tenant
from .validation import ENV_NAME, ENV_VALUE
from .wire import iso_time, kernel_id_of, sandbox_id_of

if TYPE_CHECKING:  # a type only: no HTTP (tornado) is imported here
    from .jupyter_channels import ClientMessage

DEFAULT_KERNEL = "python"
SESSION_FIELDS = ("path", "name", "type")
Session = dict[str, str]  # id, path, name, type, sandbox_id, tenant


def kernel_env(env: Any) -> dict[str, str]:
    """Only ``KERNEL_*`` variables reach the kernel, as Jupyter Kernel Gateway does; Jupyter
    Server sends many others, so the rest are dropped, not refused."""
    if not isinstance(env, dict):
        return {}
    return {k: v for k, v in env.items()
            if isinstance(k, str) and k.startswith("KERNEL_") and ENV_NAME.fullmatch(k)
            and isinstance(v, str) and ENV_VALUE.fullmatch(v)}


class JupyterService:
    """Kernels, sessions and WebSocket bridges of one gateway (see the module docstring)."""

    def __init__(self, service: SandboxService, store: HistoryStore) -> None:
        self.service = service
        self.store = store
        self.bridges: dict[str, KernelBridge] = {}
        self._sessions: dict[str, Session] = {}

    # kernels

    def template_for(self, name: str | None) -> str:
        """The template a kernelspec name asks for.

        ``python3`` (what most notebooks' metadata say) means the default template unless a
        template has that name, so existing notebooks run unchanged.
        """
        if not name or (name == "python3" and name not in self.service.templates):
            return DEFAULT_KERNEL
        return name

    async def start_kernel(self, tenant: Tenant, name: str | None, env: Any = None) -> Sandbox:
        """Claim a warm sandbox of the kernelspec's template (the tenant's caps and rates apply)."""
        template = self.template_for(name)
        if template not in self.service.templates:
            raise NotFound(f"no kernelspec {template!r}; available: "
                           f"{', '.join(sorted(self.service.templates))}")
        return await self.service.create(tenant, template, env=kernel_env(env))

    def find(self, kernel_id: str, tenant: Tenant) -> Sandbox:
        """``tenant``'s sandbox behind a kernel id (``NotFound`` if none, or another tenant's)."""
        try:
            return self.service.get(sandbox_id_of(kernel_id), tenant)
        except NotFound:
            raise NotFound(f"no kernel {kernel_id!r}") from None

    def kernel_model(self, sandbox: Sandbox) -> dict[str, Any]:
        """Jupyter Server's kernel model: id, name, last_activity, execution_state, connections."""
        bridge = self.bridges.get(sandbox.id)
        last = max(sandbox.last_active, bridge.last_activity if bridge else 0.0)
        execution_state = "dead" if sandbox.dead else sandbox.kernel.execution_state
        return {"id": kernel_id_of(sandbox.id), "name": sandbox.template,
                "last_activity": iso_time(last), "execution_state": execution_state,
                "connections": len(bridge.clients) if bridge else 0}

    # sessions

    async def load_sessions(self) -> None:
        """Take back the sessions of the sandboxes re-adopted after a crash (call after the
        service started: a graceful stop deleted its sandboxes, and their sessions with them)."""
        self._sessions.update({s["id"]: s for s in await self.store.jupyter_sessions()})

    def sessions(self, tenant: Tenant) -> list[Session]:
        """The tenant's sessions whose kernel still exists (a deleted kernel ends its session;
        the store forgets it with the sandbox's history)."""
        alive = {s.id for s in self.service.list(tenant)}
        return [s for s in self._sessions.values()
                if s["tenant"] == tenant.name and s["sandbox_id"] in alive]

    def session(self, tenant: Tenant, session_id: str) -> Session:
        for session in self.sessions(tenant):
            if session["id"] == session_id:
                return session
        raise NotFound(f"no session {session_id!r}")

    def session_model(self, tenant: Tenant, session: Session) -> dict[str, Any]:
        sandbox = self.service.get(session["sandbox_id"], tenant)
        return {"id": session["id"], "path": session["path"], "name": session["name"],
                "type": session["type"], "kernel": self.kernel_model(sandbox),
                "notebook": {"path": session["path"], "name": session["name"]}}

    async def open_session(self, tenant: Tenant, body: dict[str, Any]) -> Session:
        """The tenant's session of the notebook at the body's path, else a new one on the kernel
        the body names (``kernel.id``) or starts (``kernel.name``)."""
        path = body.get("path") or (body.get("notebook") or {}).get("path") or ""
        for session in self.sessions(tenant):
            if path and session["path"] == path:
                return session
        kernel = body.get("kernel") or {}
        if kernel.get("id"):
            sandbox = self.find(kernel["id"], tenant)
        else:
            sandbox = await self.start_kernel(tenant, kernel.get("name"), kernel.get("env"))
        session = {"id": str(uuid.uuid4()), "path": path, "name": body.get("name", ""),
                   "type": body.get("type", "notebook"), "sandbox_id": sandbox.id,
                   "tenant": tenant.name}
        await self._save(tenant, session)
        return session

    async def update_session(self, tenant: Tenant, session_id: str, body: dict[str, Any]
                             ) -> Session:
        """Rename or move the session; ``kernel.id`` points it at another kernel, and
        ``kernel.name`` starts a new one and stops the old (as Jupyter Server does)."""
        session = self.session(tenant, session_id)
        session.update({k: body[k] for k in SESSION_FIELDS if isinstance(body.get(k), str)})
        kernel = body.get("kernel") or {}
        if kernel.get("id"):
            session["sandbox_id"] = self.find(kernel["id"], tenant).id
        elif kernel.get("name"):
            old = session["sandbox_id"]
            session["sandbox_id"] = (await self.start_kernel(tenant, kernel["name"])).id
            await self.service.delete(old, tenant)
        await self._save(tenant, session)
        return session

    async def close_session(self, tenant: Tenant, session_id: str) -> None:
        """End the session and delete its kernel."""
        session = self.session(tenant, session_id)
        self._sessions.pop(session_id, None)
        await remember(self.store.delete_jupyter_session(session_id))
        try:
            await self.service.delete(session["sandbox_id"], tenant)
        except NotFound:
            pass  # the kernel was already deleted

    async def _save(self, tenant: Tenant, session: Session) -> None:
        # the tenant's sessions whose kernel is gone are dropped here, on a write (reads filter)
        alive = {s.id for s in self.service.list(tenant)}
        for stale in [k for k, s in self._sessions.items()
                      if s["tenant"] == tenant.name and s["sandbox_id"] not in alive]:
            del self._sessions[stale]
        self._sessions[session["id"]] = session
        await remember(self.store.put_jupyter_session(session))

    # WebSocket bridges

    def attach(self, client: Client, sandbox_id: str, tenant: Tenant) -> KernelBridge:
        """Connect ``client`` to the sandbox's kernel bridge (made on first use; it records its
        clients' cells in the sandbox's history) and replay what its session missed. A message
        reaching a client is activity on the sandbox (it resets the idle clock)."""
        bridge = self.bridges.get(sandbox_id)
        if bridge is None or bridge.closed:
            service = self.service

            def resolve() -> KernelConnection | None:  # a restart swaps the kernel
                try:
                    sandbox = service.get(sandbox_id, tenant)
                except NotFound:
                    return None
                return None if sandbox.dead else sandbox.kernel

            history = JupyterHistory(save=lambda cell: service.record_cell(sandbox_id, cell),
                                     output_limit=service.config.max_output_bytes)
            bridge = KernelBridge(sandbox_id, resolve, on_gone=self._forget, history=history,
                                  on_activity=lambda: service.touch(sandbox_id))
            self.bridges[sandbox_id] = bridge
        bridge.attach(client)
        return bridge

    async def send(self, bridge: KernelBridge, client: Client, tenant: Tenant,
                   msg: ClientMessage) -> None:
        """Pass a client's message to its kernel. Any message is activity on the sandbox (as
        output reaching a client is, see attach); an ``execute_request`` the tenant's rate
        refuses reaches no kernel: the client gets the failed cell a kernel would have sent."""
        self.service.touch(bridge.kernel_id)
        if msg.is_execution:
            refused = self.admit_cell(bridge, client, tenant, msg.header, msg.content)
            if refused is not None:
                for channel, reply in refusal(msg.header, "RateLimitError", refused.message):
                    client.deliver(channel, reply)
                return
        await bridge.send(client, msg.channel, msg.parts, msg.msg_id)

    def admit_cell(self, bridge: KernelBridge, client: Client, tenant: Tenant,
                   header: dict[str, Any], content: dict[str, Any]) -> TooManyRequests | None:
        """A client's ``execute_request`` spends one of the tenant's executions (the REST
        bucket); the refusal to answer with, or None once the cell is in the history (and
        ``client`` is the one told if the kernel dies under it)."""
        try:
            tenant.admit_execute()
        except TooManyRequests as exc:
            return exc
        if bridge.history is not None:
            bridge.history.started(header, content)
        bridge.note_execution(client, header)
        return None

    def _forget(self, bridge: KernelBridge) -> None:
        if self.bridges.get(bridge.kernel_id) is bridge:
            del self.bridges[bridge.kernel_id]

