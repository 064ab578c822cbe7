"""``sandcell mcp``: Sandcell's sandboxes as Model Context Protocol tools, for AI agents.

::

    sandcell mcp                  # stdio: an MCP host starts it as its subprocess
    sandcell mcp --http 8931      # streamable HTTP at http://127.0.0.1:8931/mcp

A thin layer over ``sandcell.AsyncClient``: it finds its gateway the same way
(``--url``, else ``SANDCELL_URL``; ``SANDCELL_TOKEN``; else a gateway running on this
machine). Each MCP session has sandboxes of its own: its tools reach only those, and the
ones it left open are closed when the session ends (stdin closes, or an HTTP client ends or
deletes its session). Needs the ``mcp`` extra (``pip install 'sandcell[mcp]'``); see
docs/mcp.md.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import logging
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

import anyio
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.server.session import ServerSession
from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent
from pydantic import Field
from typing_extensions import TypedDict  # pydantic reads it on Python < 3.12

from ._agent_models import FileInfo
from ._async import AsyncClient, AsyncSession
from ._exceptions import APIConnectionError, APIStatusError, SandboxError, SandcellError
from ._exceptions import TimeoutError as SandcellTimeoutError
from ._models import Execution

__all__ = ["TOOLS", "build_server", "main"]

TOOLS = ("create_sandbox", "run_code", "run_command", "write_file", "read_file", "list_files",
         "close_sandbox")
DEFAULT_TIMEOUT = 300.0  # seconds; an agent's host gives up long before a cell that never ends
READ_LIMIT = 8 << 20  # bytes read_file returns: past this an MCP message is no place for it
IMAGES = ("image/png", "image/jpeg")  # result formats sent as image content
IMAGE_FILES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

log = logging.getLogger("sandcell.mcp")
SandboxId = Annotated[str, Field(description="the id create_sandbox returned, e.g. sbx_5f0c...")]
Seconds = Annotated[float, Field(gt=0, le=86400, description="seconds before it is stopped")]
FilePath = Annotated[str, Field(description="relative to the workspace /home/sandbox, or absolute in it or /tmp")]


class Sandboxes:
    """One MCP session's sandboxes: the only ones its tools reach, closed when it ends."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._open: dict[str, AsyncSession] = {}

    async def create(self, template: str, env: dict[str, str] | None) -> AsyncSession:
        with anyio.CancelScope(shield=True):  # a sandbox the gateway granted is never lost track of
            session = await self._client.sessions.create(template, env=env, metadata={"via": "mcp"})
        self._open[session.id] = session
        return session

    def get(self, sandbox_id: str) -> AsyncSession:
        try:
            return self._open[sandbox_id]
        except KeyError:
            known = ", ".join(self._open) or "none"
            raise ToolError(f"unknown sandbox id {sandbox_id!r} (this session's open sandboxes: {known}); "
                            "pass an id create_sandbox returned, or create one") from None

    async def close(self, sandbox_id: str) -> None:
        session = self.get(sandbox_id)
        del self._open[sandbox_id]  # first: a second close_sandbox of it is an unknown id
        try:
            await session.close()
        except BaseException:
            self._open[sandbox_id] = session  # not closed: it still closes with the session
            raise

    async def close_all(self) -> None:
        """Close every sandbox still open, at once; one that fails to close does not stop the rest."""
        with anyio.CancelScope(shield=True):  # runs while the session is being torn down
            async with anyio.create_task_group() as group:
                for session in self._open.values():
                    group.start_soon(_close_quietly, session)
        self._open.clear()


async def _close_quietly(session: AsyncSession) -> None:
    try:
        await session.close()
    except SandcellError as exc:
        log.warning("could not close sandbox %s: %s", session.id, exc)


Ctx = Context[ServerSession, Sandboxes, Any]


def _sandboxes(ctx: Ctx) -> Sandboxes:
    sandboxes = ctx.request_context.lifespan_context
    assert isinstance(sandboxes, Sandboxes)
    return sandboxes


@contextmanager
def _gateway_errors() -> Iterator[None]:
    """The SDK's errors as tool errors whose text says what to change."""
    try:
        yield
    except SandcellError as exc:
        raise _tool_error(exc) from exc


def _tool_error(exc: SandcellError) -> ToolError:
    """The SDK's message, with the advice an MCP caller can follow (its own hints name Python calls)."""
    if isinstance(exc, APIConnectionError):
        return ToolError(f"{str(exc).rstrip('.')}. This MCP server finds its gateway from --url or "
                         "SANDCELL_URL, and the token from SANDCELL_TOKEN")
    if isinstance(exc, SandcellTimeoutError):
        partial = exc.command.stdout if exc.command is not None else ""
        return ToolError(f"the command did not finish within its {exc.timeout} s timeout and was "
                         "killed; pass a larger timeout, or run it in the background "
                         f"(`cmd > log 2>&1 &`). Its stdout so far: {partial!r}")
    if isinstance(exc, APIStatusError) and exc.code in HINTS:
        return ToolError(f"{exc.status_code} {exc.code}: {exc.message}. {HINTS[exc.code]}")
    if isinstance(exc, SandboxError) and exc.code in HINTS:
        return ToolError(f"the sandbox could not finish ({exc.code}): {exc.message}. {HINTS[exc.code]}")
    return ToolError(str(exc))


RECREATE = "close_sandbox it, and create_sandbox a fresh one"
HINTS = {  # by the gateway's error code
    "not_found": f"The sandbox expired or was deleted; {RECREATE}",
    "file_not_found": "list_files shows what is there",
    "kernel_died": f"Its kernel died (often out of memory); {RECREATE}",
    "sandbox_closed": f"The sandbox is closing; {RECREATE}",
}


class SandboxCreated(TypedDict):
    sandbox_id: str
    template: str


class CommandOutput(TypedDict):
    exit_code: int | None
    stdout: str
    stderr: str


class FileEntry(TypedDict):
    name: str
    path: str
    type: str
    size: int | None
    modified: str | None


async def create_sandbox(ctx: Ctx, template: str = "python",
                         env: dict[str, str] | None = None) -> SandboxCreated:
    """Create a fresh, network-less sandbox with a Python kernel and a shell; returns its
    sandbox_id, which every other tool takes. `env` is set in its environment."""
    with _gateway_errors():
        session = await _sandboxes(ctx).create(template, env)
    return {"sandbox_id": session.id, "template": session.info.template}


async def run_code(ctx: Ctx, sandbox_id: SandboxId, code: str,
                   timeout: Seconds = DEFAULT_TIMEOUT) -> CallToolResult:
    """Run Python code in the sandbox's kernel (state persists between calls, like notebook
    cells); returns stdout, stderr, the value of the last expression, PNG images (e.g.
    matplotlib plots), and the error with its traceback if the code raised."""
    session = _sandboxes(ctx).get(sandbox_id)
    try:
        execution = await session.execute(code, timeout=timeout)
    except SandcellTimeoutError as exc:
        return _timed_out(exc, timeout)
    except SandcellError as exc:
        raise _tool_error(exc) from exc
    return CallToolResult(content=execution_content(execution) or [TextContent(type="text", text="(no output)")])


def _timed_out(exc: SandcellTimeoutError, timeout: float) -> CallToolResult:
    message = (f"the code did not finish within its {timeout:g} s timeout and was interrupted; "
               "pass a larger timeout, or split the work into smaller cells")
    partial = execution_content(exc.execution) if exc.execution is not None else []
    return CallToolResult(isError=True, content=[*partial, TextContent(type="text", text=message)])


def execution_content(execution: Execution) -> list[ContentBlock]:
    """An execution as MCP content: output streams, results (PNG/JPEG as images), the error."""
    content: list[ContentBlock] = []
    if execution.stdout:
        content.append(TextContent(type="text", text=f"stdout:\n{execution.stdout}"))
    if execution.stderr:
        content.append(TextContent(type="text", text=f"stderr:\n{execution.stderr}"))
    for result in execution.results:
        image = next((mime for mime in IMAGES if mime in result.data), None)
        if image is not None:
            content.append(ImageContent(type="image", data=str(result.data[image]), mimeType=image))
        elif result.text is not None:
            content.append(TextContent(type="text", text=result.text))
    if execution.error is not None:
        error = execution.error
        trace = "\n".join(error.traceback)
        content.append(TextContent(type="text", text=f"error: {error.ename}: {error.evalue}\n{trace}"))
    return content


async def run_command(ctx: Ctx, sandbox_id: SandboxId, command: str,
                      timeout: Seconds = DEFAULT_TIMEOUT) -> CommandOutput:
    """Run a shell command (bash -c) in the sandbox's workspace; returns its exit code, stdout
    and stderr (a non-zero exit code is a result, not an error)."""
    session = _sandboxes(ctx).get(sandbox_id)
    with _gateway_errors():
        result = await session.commands.run(command, timeout=timeout)
    return {"exit_code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr}


async def write_file(ctx: Ctx, sandbox_id: SandboxId, path: FilePath, content: str,
                     encoding: Literal["text", "base64"] = "text") -> FileEntry:
    """Write a file in the sandbox (parent directories are made): `content` is UTF-8 text, or
    base64 of binary data with encoding="base64"."""
    session = _sandboxes(ctx).get(sandbox_id)
    data: str | bytes = content
    if encoding == "base64":
        try:
            data = base64.b64decode(content, validate=True)
        except binascii.Error as exc:
            raise ToolError(f"content is not valid base64 ({exc}); send base64, or encoding=\"text\"") from exc
    with _gateway_errors():
        return _entry(await session.files.write(path, data))


async def read_file(ctx: Ctx, sandbox_id: SandboxId, path: FilePath) -> CallToolResult:
    """Read a file from the sandbox: text as text, PNG/JPEG as an image, other bytes as base64."""
    session = _sandboxes(ctx).get(sandbox_id)
    with _gateway_errors():
        info = await session.files.stat(path)
        if info.size is not None and info.size > READ_LIMIT:
            raise ToolError(f"{path} is {info.size} bytes, over read_file's {READ_LIMIT} bytes; "
                            "read a part with run_command (head -c, tail), or summarise it with run_code")
        data = await session.files.read(path)
    return CallToolResult(content=[_file_content(path, data)])


def _file_content(path: str, data: bytes) -> ContentBlock:
    mime = IMAGE_FILES.get(PurePosixPath(path).suffix.lower())
    if mime is not None:
        return ImageContent(type="image", data=base64.b64encode(data).decode("ascii"), mimeType=mime)
    try:
        return TextContent(type="text", text=data.decode("utf-8"))
    except UnicodeDecodeError:
        encoded = base64.b64encode(data).decode("ascii")
        return TextContent(type="text", text=f"(binary, {len(data)} bytes, base64)\n{encoded}")


async def list_files(ctx: Ctx, sandbox_id: SandboxId, path: FilePath = ".") -> list[FileEntry]:
    """List a directory in the sandbox: each entry's name, path, type (file/dir), size, modified."""
    session = _sandboxes(ctx).get(sandbox_id)
    with _gateway_errors():
        return [_entry(info) for info in await session.files.list(path)]


def _entry(info: FileInfo) -> FileEntry:
    modified = info.modified.isoformat() if info.modified is not None else None
    return {"name": info.name, "path": info.path, "type": info.type, "size": info.size, "modified": modified}


async def close_sandbox(ctx: Ctx, sandbox_id: SandboxId) -> str:
    """Close a sandbox and delete it with its files (sandboxes left open close with the session)."""
    with _gateway_errors():
        await _sandboxes(ctx).close(sandbox_id)
    return f"closed {sandbox_id}"


def build_server(*, base_url: str | None = None, host: str = "127.0.0.1",
                 log_level: LogLevel = "WARNING") -> FastMCP[Sandboxes]:
    """The MCP server: the tools in ``TOOLS``, one ``Sandboxes`` per MCP session.

    FastMCP enters its lifespan once per session (each stdio run, each HTTP session), so
    tearing it down is where a session's sandboxes close. ``host`` is where HTTP listens:
    on loopback, FastMCP refuses other ``Host``/``Origin`` headers (DNS rebinding).
    """
    @asynccontextmanager
    async def session_sandboxes(_: FastMCP[Sandboxes]) -> AsyncIterator[Sandboxes]:
        client = AsyncClient(base_url=base_url)
        sandboxes = Sandboxes(client)
        try:
            yield sandboxes
        finally:
            with anyio.CancelScope(shield=True):
                await sandboxes.close_all()
                await client.close()

    server: FastMCP[Sandboxes] = FastMCP(
        "sandcell", lifespan=session_sandboxes, host=host,
        log_level=log_level,
        instructions="Sandcell sandboxes: create_sandbox, then run_code / run_command / files "
                     "with its sandbox_id; close_sandbox when done.")
    for tool in (create_sandbox, run_code, run_command, write_file, read_file, list_files, close_sandbox):
        server.add_tool(tool)
    return server


async def _serve_stdio(server: FastMCP[Sandboxes]) -> None:
    """Serve stdio until stdin closes; SIGTERM (a host's next step) also ends it cleanly."""
    async with anyio.create_task_group() as group:
        group.start_soon(_cancel_on_sigterm, group.cancel_scope)
        await server.run_stdio_async()
        group.cancel_scope.cancel()


async def _cancel_on_sigterm(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()  # the sessions' teardown is shielded: their sandboxes still close
            return


async def _serve_http(server: FastMCP[Sandboxes], host: str, port: int, log_level: str) -> None:
    import uvicorn

    # A bounded graceful shutdown: an open GET stream would otherwise hold it forever, and
    # the sessions (and their sandboxes) close only after it.
    config = uvicorn.Config(server.streamable_http_app(), host=host, port=port,
                            log_level=log_level.lower(), timeout_graceful_shutdown=5)
    await uvicorn.Server(config).serve()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sandcell mcp", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--http", type=int, metavar="PORT",
                        help="serve streamable HTTP on PORT (path /mcp) instead of stdio")
    parser.add_argument("--host", default="127.0.0.1", help="interface for --http (default 127.0.0.1)")
    parser.add_argument("--url", help="the gateway's URL (default: $SANDCELL_URL, else a gateway "
                                      "running on this machine, else http://127.0.0.1:8765)")
    parser.add_argument("--log-level", default="WARNING",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], type=str.upper)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``sandcell mcp [--http PORT] [--host HOST] [--url URL]``; logs go to stderr."""
    args = _parser().parse_args(argv)
    server = build_server(base_url=args.url, host=args.host, log_level=args.log_level)
    if args.http is None:
        anyio.run(_serve_stdio, server)
    else:
        anyio.run(_serve_http, server, args.host, args.http, args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
