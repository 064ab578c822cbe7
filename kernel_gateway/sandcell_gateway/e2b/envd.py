"""envd (port 49983) at ``E2B_SANDBOX_URL`` = ``<gateway>/e2b/sbx``: Connect-RPC calls of
``process.Process`` and ``filesystem.Filesystem``, the ``/files`` REST routes and ``/health``.
The sandbox is the ``E2b-Sandbox-Id`` header's (base.SandboxRequestHandler); the work is
:class:`CommandService`'s and :class:`FileService`'s.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import tornado.http1connection
import tornado.httputil
from tornado.iostream import StreamClosedError

from ..command_service import CommandService
from ..errors import BadRequest, GatewayError, PayloadTooLarge
from ..files import FileService
from . import filesystem, process
from .base import SandboxRequestHandler
from .connect import (
    STREAM,
    UNARY,
    ConnectError,
    end_of_stream,
    envelope,
    from_gateway_error,
    parse_json,
    read_envelope,
)
from .models import sandcell_path, write_info

log = logging.getLogger(__name__)
Message = dict[str, Any]
Unary = Callable[[Any, Message], Awaitable[Message]]
Stream = Callable[[Any, Message], AsyncIterator[Message]]

UNARY_CALLS: dict[str, Unary] = {
    "process.Process/List": process.list_processes,
    "process.Process/SendInput": process.send_input,
    "process.Process/SendSignal": process.send_signal,
    "process.Process/CloseStdin": process.close_stdin,
    "filesystem.Filesystem/Stat": filesystem.stat,
    "filesystem.Filesystem/MakeDir": filesystem.make_dir,
    "filesystem.Filesystem/Move": filesystem.move,
    "filesystem.Filesystem/ListDir": filesystem.list_dir,
    "filesystem.Filesystem/Remove": filesystem.remove,
}
STREAM_CALLS: dict[str, Stream] = {
    "process.Process/Start": process.start,
    "process.Process/Connect": process.connect,
}


class EnvdHandler(SandboxRequestHandler):
    @property
    def files(self) -> FileService:
        assert self.deps.files is not None  # server.py always sets it
        return self.deps.files

    @property
    def commands(self) -> CommandService:
        assert self.deps.commands is not None
        return self.deps.commands


class HealthHandler(EnvdHandler):
    """204 while the sandbox is the caller's and alive; 502 "... was not found" otherwise."""

    def get(self) -> None:
        self.set_status(204)
        self.finish()


class RpcHandler(EnvdHandler):
    """``POST /{package.Service}/{Method}``: one Connect call, unary or server-streaming."""

    _task: asyncio.Task[Any] | None = None

    async def post(self, service: str, method: str) -> None:
        name = f"{service}/{method}"
        if name in STREAM_CALLS:
            await self._stream(STREAM_CALLS[name], self._context(service))
        elif name in UNARY_CALLS:
            await self._unary(UNARY_CALLS[name], self._context(service))
        else:
            raise ConnectError("unimplemented", f"{name} is not served by Sandcell (docs/e2b.md)")

    def _context(self, service: str) -> Any:
        """What the call needs: the file service, or the command service and its timings."""
        sandbox_id = self.sandbox.id
        if service == "filesystem.Filesystem":
            return filesystem.FilesCall(self.files, sandbox_id, self.tenant)
        timeout = self.request.headers.get("Connect-Timeout-Ms", "")
        keepalive = self.request.headers.get("Keepalive-Ping-Interval", "")
        return process.ProcessCall(
            self.commands, sandbox_id, self.tenant,
            timeout=int(timeout) / 1000 if timeout.isdigit() and int(timeout) else None,
            keepalive=float(keepalive) if keepalive.isdigit() and int(keepalive) else 50.0)

    async def _unary(self, call: Unary, context: Any) -> None:
        reply = await call(context, parse_json(self.raw_body()))
        self.set_header("Content-Type", UNARY)
        self.finish(json.dumps(reply))

    async def _stream(self, call: Stream, context: Any) -> None:
        """Frames as they come; an error (even before the first) ends the stream, 200."""
        self._task = asyncio.current_task()
        self.set_header("Content-Type", STREAM)
        error: ConnectError | None = None
        try:
            async for message in call(context, read_envelope(self.raw_body())):
                self.write(envelope(message))
                await self.flush()
        except ConnectError as exc:
            error = exc
        except GatewayError as exc:
            error = from_gateway_error(exc)
        except (StreamClosedError, asyncio.CancelledError):
            log.info("client left %s on %s", self.request.path, self.sandbox.id)
            return
        finally:
            self._task = None
        self.finish(end_of_stream(error))

    def on_connection_close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Connect's unary error: ``{"code": "not_found", "message"}`` with its HTTP status."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, GatewayError):
            exc = from_gateway_error(exc)
        if not isinstance(exc, ConnectError):
            exc = ConnectError("internal", f"the gateway failed: {exc!r}")
        self.clear()
        self.set_status(exc.status)
        self.set_header("Content-Type", UNARY)
        self.finish(exc.to_json())

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ConnectError):
            status_code = exc.status
        super().send_error(status_code, **kwargs)


class FilesHandler(EnvdHandler):
    """``GET /files?path=``: the file's bytes. ``POST``: the multipart parts (or the
    octet-stream body) become files; the upload is held whole, up to ``max_file_size``."""

    def prepare(self) -> None:
        if self.request.method == "POST":
            self.max_body_size = self.files.max_file_size + (1 << 20)  # room for multipart
            connection = self.request.connection
            if isinstance(connection, tornado.http1connection.HTTP1Connection):
                connection.set_max_body_size(self.max_body_size)
        super().prepare()

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"the upload is over {self.max_body_size} bytes "
                               "([gateway] max_file_size)", code="file_too_large")

    async def get(self) -> None:
        _, data = await self.files.read(self.sandbox.id, self.tenant, self._path())
        self.set_header("Content-Type", "application/octet-stream")
        async for chunk in data:
            self.write(chunk)
            await self.flush()
        self.finish()

    async def post(self) -> None:
        written = []
        for path, data in self._uploads():
            info = await self.files.write(self.sandbox.id, self.tenant, path, _once(data))
            written.append(write_info(info))
        self.write_json(written)

    def _path(self) -> str:
        path = self.get_query_argument("path", "")
        if not path:
            raise BadRequest("missing query argument 'path'")
        return sandcell_path(path)

    def _uploads(self) -> list[tuple[str, bytes]]:
        content_type = self.request.headers.get("Content-Type", "")
        if self.request.headers.get("Content-Encoding", "identity") != "identity":
            raise BadRequest("compressed uploads are not supported (docs/e2b.md)")
        if not content_type.startswith("multipart/form-data"):
            return [(self._path(), self.raw_body())]
        files: dict[str, list[tornado.httputil.HTTPFile]] = {}
        tornado.httputil.parse_body_arguments(content_type, self.raw_body(), {}, files)
        parts = [part for group in files.values() for part in group]
        if not parts:
            raise BadRequest("the multipart upload has no file part")
        if len(parts) == 1 and self.get_query_argument("path", ""):
            return [(self._path(), parts[0].body)]
        return [(sandcell_path(part.filename), part.body) for part in parts]


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


ROUTES: list[tuple[str, type[SandboxRequestHandler]]] = [
    (r"/e2b/sbx/health", HealthHandler),
    (r"/e2b/sbx/files", FilesHandler),
    (r"/e2b/sbx/(process\.Process|filesystem\.Filesystem)/([A-Za-z]+)", RpcHandler),
]
