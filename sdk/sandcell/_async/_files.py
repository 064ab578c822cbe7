"""``session.files``: the sandbox's files, through its agent (``AsyncFiles``).

Edit ``sdk/sandcell/_async/_files.py``; ``scripts/unasync.py`` writes its sync twin
``sdk/sandcell/_sync/_files.py`` from it.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .._agent_models import FileInfo
from .._core import json_object, sandbox_path
from .._exceptions import NotFoundError

if TYPE_CHECKING:
    from ._client import AsyncGatewayAPI

__all__ = ["AsyncFiles"]

CHUNK = 1 << 20  # bytes read from a local file per piece of an upload
FileData = str | bytes | IO[bytes]


class AsyncFiles:
    """The sandbox's files: the kernel and commands see the same ones.

    Paths are relative to the workspace (``/home/sandbox``), or absolute inside it or ``/tmp``.
    A missing file raises ``NotFoundError`` (``file_not_found``), a bad path
    ``BadRequestError`` (``invalid_path``).

    Example::

        await session.files.write("data/in.csv", b"a,b\\n1,2\\n")   # parents made
        assert await session.files.read_text("data/in.csv") == "a,b\\n1,2\\n"
        print([f.name for f in await session.files.list("data")])  # ['in.csv']
        await session.files.download("data/in.csv", "local.csv")
    """

    def __init__(self, api: AsyncGatewayAPI, sandbox_id: str) -> None:
        self._api = api
        self._sandbox_id = sandbox_id

    def _path(self, action: str | None = None) -> str:
        return sandbox_path(self._sandbox_id, "files" + (f"/{action}" if action else ""))

    async def write(self, path: str, data: FileData) -> FileInfo:
        """Write ``data`` (text as UTF-8, bytes, or a binary file object read in chunks) to
        ``path``, atomically; missing parent directories are made."""
        if isinstance(data, str):
            content: bytes | AsyncIterator[bytes] = data.encode("utf-8")
        elif isinstance(data, bytes):
            content = data
        else:
            content = _chunks(data)
        response = await self._api.request("PUT", self._path(), params={"path": path}, content=content)
        return FileInfo.from_json(json_object(response))

    async def read(self, path: str) -> bytes:
        """The file's bytes."""
        response = await self._api.request("GET", self._path(), params={"path": path})
        return response.content

    async def read_text(self, path: str, encoding: str = "utf-8") -> str:
        """The file's text."""
        return (await self.read(path)).decode(encoding)

    async def list(self, path: str = ".") -> builtins.list[FileInfo]:
        """The directory's entries (listing a file is a ``BadRequestError``)."""
        response = await self._api.request("GET", self._path("list"), params={"path": path})
        return [FileInfo.from_json(entry) for entry in json_object(response).get("files") or []]

    async def stat(self, path: str) -> FileInfo:
        """What ``path`` is: its type, size and modification time."""
        response = await self._api.request("GET", self._path("stat"), params={"path": path})
        return FileInfo.from_json(json_object(response))

    async def exists(self, path: str) -> bool:
        """Whether ``path`` exists (a file or a directory)."""
        try:
            await self.stat(path)
        except NotFoundError:
            return False
        return True

    async def remove(self, path: str, *, recursive: bool = False) -> None:
        """Remove a file, or a directory (``recursive=True`` if it is not empty)."""
        params = {"path": path, "recursive": "true" if recursive else "false"}
        await self._api.request("DELETE", self._path(), params=params)

    async def make_dir(self, path: str) -> FileInfo:
        """Make a directory, and its parents."""
        response = await self._api.request("POST", self._path("mkdir"), params={"path": path})
        return FileInfo.from_json(json_object(response))

    async def rename(self, source: str, destination: str, *, overwrite: bool = False) -> FileInfo:
        """Move ``source`` to ``destination`` (an existing one only with ``overwrite=True``)."""
        body = {"source": source, "destination": destination, "overwrite": overwrite}
        response = await self._api.request("POST", self._path("rename"), json=body)
        return FileInfo.from_json(json_object(response))

    async def upload(self, local_path: str | os.PathLike[str], path: str) -> FileInfo:
        """Copy the local file at ``local_path`` to ``path`` in the sandbox, streamed."""
        with open(local_path, "rb") as file:  # noqa: ASYNC230 - a local file, read in pieces
            return await self.write(path, file)

    async def download(self, path: str, local_path: str | os.PathLike[str]) -> Path:
        """Copy ``path`` from the sandbox to ``local_path``, streamed; on failure nothing is
        left there (it is written beside it, then renamed)."""
        target = Path(local_path)
        request = self._api.build_request("GET", self._path(), json=None, params={"path": path},
                                          timeout=self._api.timeout)
        response = await self._api.send_stream(request)
        fd, partial = tempfile.mkstemp(dir=target.parent or ".", prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as file, self._api.errors():
                async for chunk in response.aiter_bytes():
                    file.write(chunk)
            os.replace(partial, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            raise
        finally:
            await response.aclose()
        return target

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._sandbox_id}>"


async def _chunks(file: IO[bytes]) -> AsyncIterator[bytes]:
    while data := file.read(CHUNK):
        yield data
