"""Tornado handlers for ``/api/v1/sandboxes/{id}/files``: parse, call FileService, write.

The path is the ``path`` query argument, read from the raw query: tornado's own argument
parsing turns control characters (a NUL among them) into spaces, and a path must reach the
agent as sent, to be refused there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from urllib.parse import unquote_to_bytes

import tornado.http1connection

from .base import BaseHandler
from .errors import BadRequest, PayloadTooLarge
from .files import FileService
from .validation import Field, require_utf8

RENAME_FIELDS = {
    "source": Field(str, required=True),
    "destination": Field(str, required=True),
    "overwrite": Field(bool),
}
UPLOAD_QUEUE = 16  # body chunks held while the agent writes; tornado waits past it


class FilesBaseHandler(BaseHandler):
    @property
    def files(self) -> FileService:
        files = self.deps.files
        if files is None:  # pragma: no cover - server.py always sets it
            raise RuntimeError("the gateway was built without a FileService")
        return files

    def path_argument(self, default: str | None = None) -> str:
        raw = [value for name, value in _raw_query(self.request.query) if name == b"path"]
        if not raw:
            if default is None:
                raise BadRequest("missing query argument 'path'", code="invalid_path")
            return default
        try:
            return raw[-1].decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("the path is not UTF-8", code="invalid_path") from None

    def flag(self, name: str) -> bool:
        value = self.get_query_argument(name, "false").lower()
        if value not in ("true", "false", "1", "0"):
            raise BadRequest(f"query argument {name!r} must be true or false")
        return value in ("true", "1")


def _raw_query(query: str) -> list[tuple[bytes, bytes]]:
    pairs = []
    for part in query.split("&"):
        name, _, value = part.partition("=")
        pairs.append((unquote_to_bytes(name.replace("+", " ")),
                      unquote_to_bytes(value.replace("+", " "))))
    return pairs


class FilesHandler(FilesBaseHandler):
    """GET: the file's bytes. PUT: the body becomes the file (streamed). DELETE: remove it."""

    _upload: asyncio.Task[dict[str, object]] | None = None

    def prepare(self) -> None:
        if self.request.method == "PUT":
            self.max_body_size = self.files.max_file_size
            # tornado's own cap is the gateway's small body limit; an upload may be larger
            connection = self.request.connection
            if isinstance(connection, tornado.http1connection.HTTP1Connection):
                connection.set_max_body_size(self.max_body_size + (1 << 20))
        super().prepare()
        if self.request.method == "PUT":
            self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue(UPLOAD_QUEUE)
            self._upload = asyncio.ensure_future(self.files.write(
                self._sandbox_id(), self.tenant, self.path_argument(), self._body_chunks()))

    def _sandbox_id(self) -> str:
        return str(self.path_args[0])

    async def _body_chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self._chunks.get()) is not None:
            yield chunk

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        if self._upload is None:
            return super().data_received(chunk)
        if self._upload.done():  # a failed write reads no more; put() reports it
            return None
        return self._chunks.put(chunk)  # tornado reads on when the queue has room

    def _too_large(self) -> PayloadTooLarge:
        if self.request.method != "PUT":
            return super()._too_large()
        return PayloadTooLarge(f"the file is over {self.max_body_size} bytes "
                               "([gateway] max_file_size)", code="file_too_large")

    async def put(self, sandbox_id: str) -> None:
        assert self._upload is not None
        if not self._upload.done():
            await self._chunks.put(None)
        self.write_json(await self._upload)

    async def get(self, sandbox_id: str) -> None:
        _, data = await self.files.read(sandbox_id, self.tenant, self.path_argument())
        self.set_header("Content-Type", "application/octet-stream")
        async for chunk in data:
            self.write(chunk)
            await self.flush()
        self.finish()

    async def delete(self, sandbox_id: str) -> None:
        await self.files.remove(sandbox_id, self.tenant, self.path_argument(),
                                self.flag("recursive"))
        self.set_status(204)
        self.finish()

    def on_finish(self) -> None:
        if self._upload is not None and not self._upload.done():
            self._upload.cancel()  # the client left mid-upload: the agent drops the temp file


class FilesListHandler(FilesBaseHandler):
    async def get(self, sandbox_id: str) -> None:
        entries = await self.files.list(sandbox_id, self.tenant, self.path_argument("."))
        self.write_json({"files": entries})


class FilesStatHandler(FilesBaseHandler):
    async def get(self, sandbox_id: str) -> None:
        self.write_json(await self.files.stat(sandbox_id, self.tenant, self.path_argument()))


class FilesMakeDirHandler(FilesBaseHandler):
    async def post(self, sandbox_id: str) -> None:
        info = await self.files.make_dir(sandbox_id, self.tenant, self.path_argument())
        self.write_json(info, status=201)


class FilesRenameHandler(FilesBaseHandler):
    async def post(self, sandbox_id: str) -> None:
        body = self.body(RENAME_FIELDS)
        source, destination = (require_utf8(body[name], f"{name!r}", code="invalid_path")
                               for name in ("source", "destination"))
        self.write_json(await self.files.rename(sandbox_id, self.tenant, source, destination,
                                                body.get("overwrite", False)))


_ID = r"([^/]+)"
ROUTES: list[tuple[str, type[BaseHandler]]] = [
    (rf"/api/v1/sandboxes/{_ID}/files", FilesHandler),
    (rf"/api/v1/sandboxes/{_ID}/files/list", FilesListHandler),
    (rf"/api/v1/sandboxes/{_ID}/files/stat", FilesStatHandler),
    (rf"/api/v1/sandboxes/{_ID}/files/mkdir", FilesMakeDirHandler),
    (rf"/api/v1/sandboxes/{_ID}/files/rename", FilesRenameHandler),
]
