"""Kernels for the sandbox service's unit tests, which start no container.

The service's own code runs on real :class:`Sandbox` objects over real
:class:`KernelConnection` s; only the kernel process at the far end is replaced: by nothing
(:func:`unanswered_kernel`) or by a small kernel in this process (:class:`EchoKernel`).

Example::

    sandboxes = EchoSandboxes()
    pool = sandboxes.pool(service)  # the service's "python" pool, launching echo sandboxes
    sandbox = await service.create(tenant)
    ...
    await service.close()
    sandboxes.close()
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.session import Session

from sandcell_gateway.config import TemplateConfig
from sandcell_gateway.kernel import KernelConnection, connection_info
from sandcell_gateway.pool import WarmPool
from sandcell_gateway.provisioner import ContainerHandle
from sandcell_gateway.sandbox import Sandbox
from sandcell_gateway.service import SandboxService
from sandcell_gateway.wire import new_sandbox_id


def unanswered_kernel() -> KernelConnection:
    """A real connection whose ipc sockets nobody binds: the service can fail it (a death),
    close it (a destroy) and read its state, while a cell would wait for a kernel that never
    answers. Its owner closes it, as the service does when it destroys the sandbox."""
    return KernelConnection(connection_info("/nonexistent/k", "unused-key"))


class EchoKernel:
    """A Jupyter kernel on ipc sockets in a directory of its own, served on this event loop.

    It answers every request on shell and control between a busy and an idle status, as
    IPython does; a cell prints its own code to stdout.
    """

    def __init__(self) -> None:
        # short: an ipc path may not exceed ~107 bytes, and pytest's tmp_path can be long
        self.directory = Path(tempfile.mkdtemp(prefix="echo-kernel-"))
        key = secrets.token_hex(16)
        self.info = connection_info(str(self.directory / "k"), key)
        self._session = Session(key=key.encode(), signature_scheme="hmac-sha256",
                                username="kernel")
        context = zmq.asyncio.Context.instance()
        self._sockets: dict[str, zmq.asyncio.Socket] = {}
        for channel, kind in (("shell", zmq.ROUTER), ("control", zmq.ROUTER),
                              ("iopub", zmq.PUB)):
            sock = context.socket(kind)
            sock.setsockopt(zmq.LINGER, 0)
            sock.bind(f"ipc://{self.info['ip']}-{self.info[channel + '_port']}")
            self._sockets[channel] = sock
        self.execution_count = 0
        self._tasks = [asyncio.ensure_future(self._serve(self._sockets[channel]))
                       for channel in ("shell", "control")]

    async def _serve(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            frames = await sock.recv_multipart()
            idents, parts = self._session.feed_identities(frames)
            request = self._session.deserialize(parts)
            await self._publish("status", {"execution_state": "busy"}, request)
            reply = await self._answer(request)
            kind = request["msg_type"].replace("_request", "_reply")
            msg = self._session.msg(kind, reply, parent=request)
            await sock.send_multipart(self._session.serialize(msg, idents))
            await self._publish("status", {"execution_state": "idle"}, request)

    async def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        if request["msg_type"] == "kernel_info_request":
            return {"status": "ok", "protocol_version": "5.3", "implementation": "echo",
                    "language_info": {"name": "python"}}
        if request["msg_type"] == "execute_request":
            code = request["content"]["code"]
            if not request["content"].get("silent"):
                await self._publish("stream", {"name": "stdout", "text": code}, request)
            if request["content"].get("store_history", True):
                self.execution_count += 1
            return {"status": "ok", "execution_count": self.execution_count,
                    "user_expressions": {}}
        return {"status": "ok"}  # interrupt_request and the like

    async def _publish(self, msg_type: str, content: dict[str, Any],
                       parent: dict[str, Any]) -> None:
        msg = self._session.msg(msg_type, content, parent=parent)
        await self._sockets["iopub"].send_multipart(self._session.serialize(msg))

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for sock in self._sockets.values():
            sock.close(linger=0)
        shutil.rmtree(self.directory, ignore_errors=True)


class EchoSandboxes:
    """A ``launch`` for a ``WarmPool[Sandbox]``: each sandbox a real :class:`Sandbox` over a
    real :class:`KernelConnection` to an :class:`EchoKernel` of its own, proven ready as a
    container's kernel is (kernel_info answered and IOPub delivering).

    While ``gate`` is clear, launches wait (``entered`` is set once one does); ``launched``
    counts those that finished.
    """

    def __init__(self) -> None:
        self.gate, self.entered = asyncio.Event(), asyncio.Event()
        self.gate.set()
        self.launched = 0
        self._kernels: list[EchoKernel] = []

    def pool(self, service: SandboxService, template: str = "python") -> WarmPool[Sandbox]:
        """Put a started pool of echo sandboxes in place of ``service``'s own; it keeps none
        ready (``min_ready = 0``), so every claim is one launch."""
        config = dataclasses.replace(service.config.template(template), min_ready=0)
        pool = WarmPool[Sandbox](config, launch=self.launch, destroy=service._destroy,
                                 new_id=new_sandbox_id)
        service.pools[template] = pool
        pool.start()
        return pool

    async def launch(self, template: TemplateConfig, sandbox_id: str) -> Sandbox:
        self.entered.set()
        await self.gate.wait()
        kernel = EchoKernel()
        self._kernels.append(kernel)
        connection = KernelConnection(kernel.info)
        try:
            info = await connection.wait_ready(deadline=10)
        except BaseException:
            connection.close()
            raise
        handle = ContainerHandle(f"c_{sandbox_id}", sandbox_id, template.name,
                                 kernel.directory, kernel.info)
        self.launched += 1
        return Sandbox(handle, connection, language_info=dict(info["language_info"]))

    def close(self) -> None:
        """Stop every echo kernel (the sandboxes' connections are the service's to close)."""
        for kernel in self._kernels:
            kernel.close()
