"""envd's ``filesystem.Filesystem`` service over :class:`FileService`: messages in proto JSON.

Paths are E2B's (``/home/user/...``), translated to the workspace (models.sandcell_path); the
agent judges what may be reached. ``Remove`` removes directories with their contents and
``Move`` replaces an existing destination, as envd's do.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import NotFound
from ..files import FileService
from ..tenants import Tenant
from .connect import ConnectError, field, text_field
from .models import entry_info, sandcell_path

Message = dict[str, Any]
MAX_DEPTH = 16  # ListDir's depth: deeper listings are one call per directory, so bounded


@dataclasses.dataclass
class FilesCall:
    files: FileService
    sandbox_id: str
    tenant: Tenant


def path_of(message: Message, name: str = "path") -> str:
    return sandcell_path(text_field(message, name))


async def stat(call: FilesCall, message: Message) -> Message:
    info = await call.files.stat(call.sandbox_id, call.tenant, path_of(message))
    return {"entry": entry_info(info)}


async def make_dir(call: FilesCall, message: Message) -> Message:
    """envd says ``already_exists`` for a directory that is there (the SDK returns False);
    the agent's MakeDir succeeds on one, so it is asked first."""
    path = path_of(message)
    try:
        await call.files.stat(call.sandbox_id, call.tenant, path)
    except NotFound:
        return {"entry": entry_info(await call.files.make_dir(call.sandbox_id, call.tenant, path))}
    raise ConnectError("already_exists", f"{text_field(message, 'path')} already exists")


async def move(call: FilesCall, message: Message) -> Message:
    info = await call.files.rename(call.sandbox_id, call.tenant, path_of(message, "source"),
                                   path_of(message, "destination"), overwrite=True)
    return {"entry": entry_info(info)}


async def remove(call: FilesCall, message: Message) -> Message:
    await call.files.remove(call.sandbox_id, call.tenant, path_of(message), recursive=True)
    return {}


async def list_dir(call: FilesCall, message: Message) -> Message:
    """The entries ``depth`` levels down (0 or 1: the directory's own)."""
    depth = field(message, "depth", 1)
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
        raise ConnectError("invalid_argument", "depth must be a whole number")
    entries: list[Message] = []
    await _walk(call, path_of(message), max(1, min(depth, MAX_DEPTH)), entries)
    return {"entries": entries}


async def _walk(call: FilesCall, path: str, depth: int, into: list[Message]) -> None:
    for info in await call.files.list(call.sandbox_id, call.tenant, path):
        into.append(entry_info(info))
        if depth > 1 and info["type"] == "dir":
            await _walk(call, info["path"], depth - 1, into)
