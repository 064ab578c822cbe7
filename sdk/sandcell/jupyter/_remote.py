"""A Sandcell kernel as the provisioner sees it: a claimed sandbox behind a local bridge.

Everything here runs on one daemon thread's event loop (:class:`BridgeLoop`), shared by the
process's Sandcell kernels, because jupyter_client's synchronous ``KernelManager`` runs its
coroutines on a loop that stops between calls, and the bridge must keep relaying meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
from collections.abc import Coroutine
from typing import Any, ClassVar, TypeVar

import zmq.asyncio
from jupyter_client.connect import KernelConnectionInfo

from .._config import ClientConfig
from .._exceptions import SandcellError
from ._bridge import ChannelBridge, open_channels
from ._gateway import GatewayKernels, start_error
from ._reaper import Reaper

log = logging.getLogger(__name__)
T = TypeVar("T")
DIED = 1  # poll()'s exit code for a sandbox that died or was deleted behind our back


class BridgeLoop:
    """One daemon thread running the event loop of every Sandcell kernel in this process.

    It also holds one HTTP client per gateway (and token) for all of them: a kernel that
    built its own paid for the client and a new connection on every start (about a third
    of the bridge thread's CPU time in a start), where a kept-alive one is reused.
    """

    _current: ClassVar[BridgeLoop | None] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.context = zmq.asyncio.Context()
        self._gateways: dict[ClientConfig, GatewayKernels] = {}
        threading.Thread(target=self.loop.run_forever, name="sandcell-bridge", daemon=True).start()

    @classmethod
    def get(cls) -> BridgeLoop:
        with cls._lock:
            if cls._current is None or cls._current.pid != os.getpid():
                cls._current = cls()  # a forked child cannot use its parent's thread
            return cls._current

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the bridge loop and await it from the caller's loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def gateway(self, config: ClientConfig) -> GatewayKernels:
        """The shared client of ``config``'s gateway (call on the bridge loop: it is bound to it).

        Kept for the process's life, as few as the gateways and tokens it uses.
        """
        gateway = self._gateways.get(config)
        if gateway is None:
            gateway = self._gateways[config] = GatewayKernels(config)
        return gateway


class RemoteKernel:
    """The sandboxes behind one kernel manager, one at a time (a restart claims a new one).

    ``exit_code`` is ``None`` while the current sandbox lives: ``poll()`` reads it.
    """

    def __init__(self, spec_name: str, template: str, key: bytes, loop: BridgeLoop) -> None:
        self.spec_name, self.template, self.key = spec_name, template, key
        self.context, self._loop = loop.context, loop
        self.session_id = uuid.uuid4().hex
        self.kernel_id: str | None = None
        self.exit_code: int | None = None
        self._bridge: ChannelBridge | None = None
        self._gateway: GatewayKernels | None = None

    async def start(self, env: dict[str, str]) -> KernelConnectionInfo:
        """Claim a warm sandbox and relay the local sockets to it; the connection info."""
        gateway = self._gateway = self._loop.gateway(ClientConfig.resolve())
        if self._bridge is None:
            self._bridge = ChannelBridge(self.key, self.context)
        try:
            kernel_id = await gateway.claim(self.template, env)
        except SandcellError as exc:
            error = self._start_error(exc)  # before the release: it names the gateway's URL
            self._release()  # jupyter_client calls no cleanup after a failed start
            raise error from exc
        Reaper.get().add(kernel_id, gateway.config.base_url, gateway.config.token)
        self.kernel_id, self.exit_code = kernel_id, None
        # The channels WebSocket opens while jupyter_client finishes its start (it sleeps 10 ms
        # in every start_kernel) and its client connects: the bridge holds what clients send
        # until it is attached. Every error a user can fix is the claim's, raised above.
        asyncio.ensure_future(self._connect(gateway, kernel_id))
        return self._bridge.connection_info()

    async def interrupt(self) -> None:
        if self.kernel_id is not None and self.exit_code is None and self._gateway is not None:
            await self._gateway.interrupt(self.kernel_id)

    async def stop(self, exit_code: int) -> None:
        """Delete the current sandbox (shutdown, terminate and kill all mean this)."""
        kernel_id = self.kernel_id
        if kernel_id is None or self.exit_code is not None:
            return
        self.exit_code = exit_code
        if self._bridge is not None:
            self._bridge.detach()
        await self._delete(kernel_id)

    async def close(self) -> None:
        """Release everything: the sandbox and the local sockets (the HTTP client is shared)."""
        await self.stop(0)
        self._release()

    def _release(self) -> None:
        if self._bridge is not None:
            self._bridge.close()
            self._bridge = None

    async def _delete(self, kernel_id: str) -> None:
        assert self._gateway is not None
        try:
            await self._gateway.delete(kernel_id)
        except SandcellError as exc:
            log.warning("sandcell: could not delete sandbox %s (%s); the reaper will retry when "
                        "this process exits", kernel_id, exc)
            return
        Reaper.get().remove(kernel_id)

    async def _connect(self, gateway: GatewayKernels, kernel_id: str) -> None:
        """Open the claimed sandbox's channels and relay until they close."""
        try:
            ws = await open_channels(gateway.channels_url(kernel_id, self.session_id), gateway.headers())
        except Exception as exc:
            if self._is_current(kernel_id):
                log.warning("sandcell: the channels WebSocket of kernel %s on %s failed (%s); "
                            "the kernel is dead", kernel_id, gateway.config.base_url, exc)
                await self._died(kernel_id)
            return
        if not self._is_current(kernel_id) or self._bridge is None:
            ws.close()  # stopped, or replaced by a restart, while the WebSocket opened
            return
        await self._watch(kernel_id, self._bridge.attach(ws, kernel_id))

    async def _watch(self, kernel_id: str, upstream: asyncio.Future[Any]) -> None:
        """The WebSocket closed: unless we closed it, the sandbox died (or the gateway went)."""
        try:
            await upstream
        except Exception as exc:  # a read error is a close too
            log.debug("sandcell: channels of %s failed: %s", kernel_id, exc)
        if self._is_current(kernel_id):  # else we stopped it ourselves, or a restart replaced it
            log.warning("sandcell: the sandbox of kernel %s died or was deleted", kernel_id)
            await self._died(kernel_id)

    def _is_current(self, kernel_id: str) -> bool:
        return self.kernel_id == kernel_id and self.exit_code is None

    async def _died(self, kernel_id: str) -> None:
        self.exit_code = DIED
        if self._bridge is not None:
            self._bridge.detach()
        await self._delete(kernel_id)

    def _start_error(self, exc: SandcellError) -> Exception:
        url = self._gateway.config.base_url if self._gateway else "?"
        return start_error(exc, self.spec_name, self.template, url)
