"""Kernel containers: a template's image started with its kernel's ipc sockets in ``/conn``.

The gateway reaches each kernel through ZMQ ``ipc`` sockets in a fresh per-sandbox host
directory, bind-mounted at ``/conn``: no TCP, no published port. This module owns those
directories and the connection file in them; starting and removing the container itself goes
through the runtime seam (containers.py).

Example::

    kernels = KernelProvisioner(config, DockerBackend(config))
    handle = await kernels.launch(config.template("python"), "sbx_0123456789abcdef")
    await kernels.remove(handle)
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

from .config import GatewayConfig, TemplateConfig
from .containers import ContainerRuntime, LaunchSpec, Mount, sandbox_uid
from .kernel import read_connection_file, write_connection_file


@dataclasses.dataclass
class ContainerHandle:
    """A started kernel container and how to reach its kernel from the host."""

    container_id: str
    sandbox_id: str
    template: str
    conn_dir: Path
    connection: dict[str, Any]
    removing: bool = False  # its death is expected, not news
    removed: bool = False


class KernelProvisioner:
    """Starts kernel containers for one gateway, each with its own connection directory."""

    def __init__(self, config: GatewayConfig, runtime: ContainerRuntime) -> None:
        self.runtime = runtime
        # per gateway: several gateways (tests, a user's own) may share the state_dir
        self.root = config.state_dir / config.gateway_id
        self._uid = sandbox_uid()

    def prepare(self) -> None:
        self.root.mkdir(parents=True, mode=0o700, exist_ok=True)

    async def launch(self, template: TemplateConfig, sandbox_id: str) -> ContainerHandle:
        """Start a container whose kernel listens on ipc sockets in a fresh host directory."""
        conn_dir = self.root / sandbox_id
        conn_dir.mkdir(parents=True, mode=0o700)
        try:
            connection = write_connection_file(conn_dir, self._uid if os.getuid() == 0 else None)
            container_id = await self.runtime.launch(LaunchSpec(
                template.image, sandbox_id, template.name, template.limits,
                mounts=(Mount(conn_dir, "/conn"),),
                environment={"SANDCELL_CONNECTION_FILE": "/conn/kernel.json",
                             "SANDCELL_AGENT": "1" if template.agent else "0"},
                oci_runtime=template.runtime))
        except BaseException:
            shutil.rmtree(conn_dir, ignore_errors=True)
            raise
        return ContainerHandle(container_id, sandbox_id, template.name, conn_dir, connection)

    async def remove(self, handle: ContainerHandle) -> None:
        """Remove the container, then its connection directory. Idempotent.

        When the runtime is unreachable this raises and keeps both: the kernel still works (it
        needs no runtime call) and the caller can retry.
        """
        if handle.removed:
            return
        handle.removing = True
        try:
            await self.runtime.remove(handle.container_id)
        finally:
            handle.removing = False
        handle.removed = True
        shutil.rmtree(handle.conn_dir, ignore_errors=True)

    def reattach(self, container_id: str, sandbox_id: str, template: str) -> ContainerHandle:
        """A handle on a container a previous run started (``OSError``/``ValueError`` when its
        connection directory is gone)."""
        conn_dir = self.root / sandbox_id
        return ContainerHandle(container_id, sandbox_id, template, conn_dir,
                               read_connection_file(conn_dir))

    def remove_dirs_except(self, keep: set[str]) -> None:
        """Remove connection directories of sandboxes not in ``keep`` (a crashed run's)."""
        for path in self.root.iterdir() if self.root.is_dir() else ():
            if path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)

    def remove_all_dirs(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
