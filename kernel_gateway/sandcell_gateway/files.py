"""Files in a sandbox, through its agent: the policy behind the ``/files`` routes.

Paths are the agent's to judge (``sandcell_agent.paths``: workspace-relative, or absolute
inside the workspace or ``/tmp``; no escape by ``..`` or symlink). Here the agent's refusals
become the gateway's errors, once, in :func:`agent.agent_errors`.

Example::

    files = FileService(service, max_file_size=100 << 20)
    info = await files.write("sbx_...", tenant, "data/in.csv", chunks)
    async for chunk in files.read("sbx_...", tenant, "data/in.csv"): ...
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from sandcell_agent._proto import sandbox_pb2 as pb

from .agent import agent_errors
from .errors import GatewayError
from .service import SandboxService
from .tenants import Tenant

FILE_TYPES = {pb.FILE_TYPE_FILE: "file", pb.FILE_TYPE_DIR: "dir",
              pb.FILE_TYPE_SYMLINK: "symlink", pb.FILE_TYPE_OTHER: "other"}


def file_info(info: pb.FileInfo) -> dict[str, Any]:
    """The REST shape of a file: ``{"name", "path", "type", "size", "modified"}``."""
    return {"name": info.name, "path": info.path, "type": FILE_TYPES.get(info.type, "other"),
            "size": info.size, "modified": info.modified}


class FileService:
    """Reads, writes, lists and removes files in a tenant's sandbox, through its agent."""

    def __init__(self, sandboxes: SandboxService, max_file_size: int) -> None:
        self.sandboxes = sandboxes
        self.max_file_size = max_file_size

    def _stub(self, sandbox_id: str, tenant: Tenant) -> Any:
        """The agent's stub, once the call is admitted: every file call spends one of the
        tenant's execute rate (docs/api.md, "Tenants and limits")."""
        agent = self.sandboxes.get(sandbox_id, tenant).require_agent()
        tenant.admit_execute()
        return agent.stub

    async def read(self, sandbox_id: str, tenant: Tenant, path: str
                   ) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
        """The file's info (so errors come before any byte is sent), then its bytes."""
        call = self._stub(sandbox_id, tenant).ReadFile(pb.PathRequest(path=path))
        with agent_errors(sandbox_id):
            first: Any = await call.read()  # a ReadChunk, or EOF
        if first is grpc.aio.EOF or not first.HasField("info"):
            raise GatewayError("sandbox agent: a read began without the file's info",
                               code="agent_error")

        async def data() -> AsyncIterator[bytes]:
            with agent_errors(sandbox_id):
                while (chunk := await call.read()) is not grpc.aio.EOF:
                    yield chunk.data
        return file_info(first.info), data()

    async def write(self, sandbox_id: str, tenant: Tenant, path: str,
                    chunks: AsyncIterator[bytes]) -> dict[str, Any]:
        """Write ``chunks`` atomically (parents made); past ``max_file_size`` nothing is left."""
        call = self._stub(sandbox_id, tenant).WriteFile()
        with agent_errors(sandbox_id):
            try:
                await call.write(pb.WriteChunk(header=pb.WriteHeader(
                    path=path, make_parents=True, max_size=self.max_file_size)))
                async for chunk in chunks:
                    await call.write(pb.WriteChunk(data=chunk))
                await call.done_writing()
            except asyncio.InvalidStateError:
                pass  # the agent ended the call early (a refusal): awaiting it says why
            # (not a request iterator: an early refusal then surfaces as "Internal error")
            return file_info(await call)

    async def list(self, sandbox_id: str, tenant: Tenant, path: str) -> list[dict[str, Any]]:
        with agent_errors(sandbox_id):
            reply = await self._stub(sandbox_id, tenant).ListDir(pb.PathRequest(path=path))
        return [file_info(entry) for entry in reply.entries]

    async def stat(self, sandbox_id: str, tenant: Tenant, path: str) -> dict[str, Any]:
        with agent_errors(sandbox_id):
            return file_info(await self._stub(sandbox_id, tenant).Stat(pb.PathRequest(path=path)))

    async def remove(self, sandbox_id: str, tenant: Tenant, path: str, recursive: bool) -> None:
        with agent_errors(sandbox_id):
            await self._stub(sandbox_id, tenant).Remove(
                pb.RemoveRequest(path=path, recursive=recursive))

    async def make_dir(self, sandbox_id: str, tenant: Tenant, path: str) -> dict[str, Any]:
        with agent_errors(sandbox_id):
            return file_info(await self._stub(sandbox_id, tenant).MakeDir(pb.PathRequest(path=path)))

    async def rename(self, sandbox_id: str, tenant: Tenant, source: str, destination: str,
                     overwrite: bool) -> dict[str, Any]:
        with agent_errors(sandbox_id):
            return file_info(await self._stub(sandbox_id, tenant).Rename(pb.RenameRequest(
                source=source, destination=destination, overwrite=overwrite)))
