"""``SandcellProvisioner``: jupyter_client's kernel provisioner for warm Sandcell sandboxes.

Registered as the ``sandcell`` entry point of ``jupyter_client.kernel_provisioners``. A
kernelspec names it in ``metadata.kernel_provisioner`` with its template::

    {"provisioner_name": "sandcell", "config": {"template": "python"}}

and every jupyter_client-based tool (nbclient, nbval, papermill, nbconvert, jupyter console)
then runs that kernel in a sandbox, by kernel name alone.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase
from traitlets import Unicode

from ._remote import BridgeLoop, RemoteKernel

POLL_INTERVAL = 0.02  # seconds between checks in wait(); poll() itself is a local read
STOPPED_BY = {signal.SIGTERM: -signal.SIGTERM, signal.SIGKILL: -signal.SIGKILL}


class SandcellProvisioner(KernelProvisionerBase):
    """Claims a warm sandbox on ``launch_kernel`` and bridges local ZMQ sockets to it.

    >>> from jupyter_client.manager import KernelManager  # doctest: +SKIP
    >>> km = KernelManager(kernel_name="sandcell-python"); km.start_kernel()  # doctest: +SKIP
    """

    template = Unicode("python", config=True, help="The Sandcell template whose pool to claim from.")

    _remote: RemoteKernel | None = None
    _launched = False

    @property
    def has_process(self) -> bool:
        return self._launched

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.pop("extra_arguments", None)  # nothing is run locally
        return await super().pre_launch(cmd=list(self.kernel_spec.argv), **kwargs)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        env = {k: v for k, v in (kwargs.get("env") or {}).items() if k.startswith("KERNEL_")}
        self.connection_info = await self._bridge_loop.call(self._kernel().start(env))
        self._launched = True
        return self.connection_info

    async def poll(self) -> int | None:
        if not self._launched or self._remote is None:
            return 0
        return self._remote.exit_code

    async def wait(self) -> int | None:
        while (code := await self.poll()) is None:
            await asyncio.sleep(POLL_INTERVAL)
        self._launched = False
        return code

    async def send_signal(self, signum: int) -> None:
        if signum == signal.SIGINT:
            if self._remote is not None:
                await self._bridge_loop.call(self._remote.interrupt())
        elif signum in STOPPED_BY:
            await self._stop(STOPPED_BY[signal.Signals(signum)])
        elif signum != 0:
            self.log.warning("Sandcell kernels take SIGINT, SIGTERM and SIGKILL only; "
                             "ignored signal %s", signum)

    async def kill(self, restart: bool = False) -> None:
        await self._stop(-signal.SIGKILL)

    async def terminate(self, restart: bool = False) -> None:
        await self._stop(-signal.SIGTERM)

    async def shutdown_requested(self, restart: bool = False) -> None:
        await self._stop(0)  # a sandbox serves one kernel: shutting down is deleting it

    async def cleanup(self, restart: bool = False) -> None:
        if restart or self._remote is None:
            return  # the local sockets stay bound: the restarted kernel reuses the same ports
        remote, self._remote = self._remote, None
        await self._bridge_loop.call(remote.close())

    async def get_provisioner_info(self) -> dict[str, Any]:
        info = await super().get_provisioner_info()
        info["sandcell_kernel_id"] = self._remote.kernel_id if self._remote else None
        return info

    @property
    def _bridge_loop(self) -> BridgeLoop:
        return BridgeLoop.get()

    def _kernel(self) -> RemoteKernel:
        if self._remote is None:
            name = getattr(self.parent, "kernel_name", "") or f"sandcell-{self.template}"
            key = uuid.uuid4().hex.encode()
            self._remote = RemoteKernel(name, self.template, key, self._bridge_loop)
        return self._remote

    async def _stop(self, exit_code: int) -> None:
        if self._remote is not None:
            await self._bridge_loop.call(self._remote.stop(exit_code))
