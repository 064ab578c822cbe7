"""``sandcell mcp``: the official MCP client (``ClientSession``) over stdio and streamable HTTP,
against a real gateway of its own, with real sandboxes and their agents."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, ImageContent, TextContent
from sandcell.mcp import TOOLS

from .conftest import Gateway, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
[gateway]
gateway_id = "{gateway_id}"

[templates.python]
min_ready = 1
max_total = 6

[plugins]
enabled = false
"""
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with Gateway(tmp_path_factory.mktemp("mcp"), CONFIG) as gw:
        gw.wait_ready()
        yield gw
    assert gw.containers() == [], gw.log()


@pytest.fixture(scope="module")
def server_env(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The MCP server's environment: this gateway, this checkout's packages, no other runtime files."""
    path = [str(ROOT / "sdk"), str(ROOT / "kernel_gateway"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "SANDCELL_URL": gateway.url, "SANDCELL_TOKEN": gateway.token,
            "SANDCELL_RUNTIME_DIR": str(tmp_path_factory.mktemp("mcp-runtime")),
            "PYTHONPATH": os.pathsep.join(filter(None, path))}


@pytest.fixture(scope="module")
def http_server(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``sandcell mcp --http PORT`` on a free port; its URL once it accepts connections."""
    with http_server_process(server_env, tmp_path_factory.mktemp("mcp-http")) as (_, url):
        yield url


@contextmanager
def http_server_process(env: dict[str, str], workdir: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = _free_port()
    log = workdir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "sandcell_gateway.cli", "mcp", "--http", str(port)],
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _listening(process, port, log), 30, "sandcell mcp --http to listen")
        yield process, f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(process)


def stop(process: subprocess.Popen[Any]) -> int:
    """SIGTERM, and SIGKILL if it has not stopped within 30 s (then fail)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)
        raise


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening(process: subprocess.Popen[bytes], port: int, log: Path) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"sandcell mcp --http exited with {process.returncode}:\n{log.read_text()}")
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture(params=["stdio", "http"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def connect(transport: str, server_env: dict[str, str], request: pytest.FixtureRequest) -> Any:
    """``connect()``: a fresh MCP session on ``transport`` (stdio: its own server process)."""
    @asynccontextmanager
    async def session() -> AsyncIterator[ClientSession]:
        if transport == "stdio":
            params = StdioServerParameters(command=sys.executable, env=server_env,
                                           args=["-m", "sandcell_gateway.cli", "mcp"])
            streams = stdio_client(params)
        else:
            streams = streamable_http_client(request.getfixturevalue("http_server"))
        async with streams as (read, write, *_), ClientSession(read, write) as client:
            await client.initialize()
            yield client

    return session


async def call(client: ClientSession, tool: str, **arguments: Any) -> CallToolResult:
    return await client.call_tool(tool, arguments)


def texts(result: CallToolResult) -> list[str]:
    return [block.text for block in result.content if isinstance(block, TextContent)]


def error_text(result: CallToolResult) -> str:
    assert result.isError, result
    return "\n".join(texts(result))


async def create(client: ClientSession, **arguments: Any) -> str:
    result = await call(client, "create_sandbox", **arguments)
    assert not result.isError, result
    assert result.structuredContent is not None
    return str(result.structuredContent["sandbox_id"])


def live_sandboxes(gateway: Gateway) -> set[str]:
    with gateway.http() as http:
        return {sandbox["id"] for sandbox in http.get("/api/v1/sandboxes").json()["sandboxes"]}


async def test_it_lists_the_issue_s_tools(connect: Any) -> None:
    async with connect() as client:
        listed = await client.list_tools()
    assert sorted(tool.name for tool in listed.tools) == sorted(TOOLS) == sorted([
        "create_sandbox", "run_code", "run_command", "write_file", "read_file", "list_files", "close_sandbox"])


async def test_run_code_gives_text_images_and_errors(connect: Any) -> None:
    async with connect() as client:
        sandbox = await create(client, env={"FROM_MCP": "yes"})
        result = await call(client, "run_code", sandbox_id=sandbox, code="1+1")
        assert (result.isError, texts(result)) == (False, ["2"])

        result = await call(client, "run_code", sandbox_id=sandbox,
                            code="import os\nprint(os.environ['FROM_MCP'])\nx = 41")
        assert texts(result) == ["stdout:\nyes\n"]
        assert texts(await call(client, "run_code", sandbox_id=sandbox, code="x + 1")) == ["42"]

        plot = ("%matplotlib inline\nimport matplotlib.pyplot as plt\n"
                "plt.plot([1, 3, 2])\nplt.show()")
        result = await call(client, "run_code", sandbox_id=sandbox, code=plot)
        images = [block for block in result.content if isinstance(block, ImageContent)]
        assert len(images) == 1 and images[0].mimeType == "image/png", result
        assert base64.b64decode(images[0].data).startswith(PNG)

        result = await call(client, "run_code", sandbox_id=sandbox, code="print('before')\n1/0")
        assert not result.isError  # code that raises is data, as in a notebook
        stdout, error = texts(result)
        assert stdout == "stdout:\nbefore\n"
        assert error.startswith("error: ZeroDivisionError: division by zero\n")
        assert "Traceback" in error or "1/0" in error


async def test_run_command_gives_stdout_stderr_and_exit_code(connect: Any) -> None:
    async with connect() as client:
        sandbox = await create(client)
        result = await call(client, "run_command", sandbox_id=sandbox, command="echo hi")
        assert result.structuredContent == {"exit_code": 0, "stdout": "hi\n", "stderr": ""}
        result = await call(client, "run_command", sandbox_id=sandbox, command="echo oops >&2; exit 3")
        assert not result.isError  # a non-zero exit is a result
        assert result.structuredContent == {"exit_code": 3, "stdout": "", "stderr": "oops\n"}


async def test_files_are_written_read_and_listed(connect: Any) -> None:
    async with connect() as client:
        sandbox = await create(client)
        written = await call(client, "write_file", sandbox_id=sandbox, path="data/in.csv", content="a,b\n1,2\n")
        assert not written.isError, written
        assert written.structuredContent is not None and written.structuredContent["size"] == 8
        assert texts(await call(client, "read_file", sandbox_id=sandbox, path="data/in.csv")) == ["a,b\n1,2\n"]

        image = PNG + b"\x00\xffnot really"
        await call(client, "write_file", sandbox_id=sandbox, path="data/p.png",
                   content=base64.b64encode(image).decode(), encoding="base64")
        read = await call(client, "read_file", sandbox_id=sandbox, path="data/p.png")
        assert isinstance(read.content[0], ImageContent) and base64.b64decode(read.content[0].data) == image

        listed = await call(client, "list_files", sandbox_id=sandbox, path="data")
        assert listed.structuredContent is not None
        entries = listed.structuredContent["result"]
        assert sorted((e["name"], e["type"]) for e in entries) == [("in.csv", "file"), ("p.png", "file")]
        # the kernel sees the same files
        assert texts(await call(client, "run_code", sandbox_id=sandbox, code="open('data/in.csv').read()")) \
            == ["'a,b\\n1,2\\n'"]


async def test_bad_input_is_a_tool_error_that_says_what_to_change(connect: Any) -> None:
    async with connect() as client:
        sandbox = await create(client)
        unknown = await call(client, "run_code", sandbox_id="sbx_nope", code="1")
        assert "unknown sandbox id 'sbx_nope'" in error_text(unknown) and sandbox in error_text(unknown)
        assert "unknown sandbox id" in error_text(await call(client, "read_file", sandbox_id="x", path="a"))

        negative = await call(client, "run_command", sandbox_id=sandbox, command="true", timeout=-1)
        assert "timeout" in error_text(negative) and "greater than 0" in error_text(negative)

        slow = await call(client, "run_code", sandbox_id=sandbox, code="print('started', flush=True)\n"
                          "import time\ntime.sleep(60)", timeout=1)
        assert "started" in error_text(slow) and "larger timeout" in error_text(slow)
        slow = await call(client, "run_command", sandbox_id=sandbox, command="echo begun; sleep 60", timeout=1)
        assert "begun" in error_text(slow) and "larger timeout" in error_text(slow)

        missing = await call(client, "read_file", sandbox_id=sandbox, path="nope.txt")
        assert "file_not_found" in error_text(missing)
        outside = await call(client, "write_file", sandbox_id=sandbox, path="../etc/x", content="")
        assert "invalid_path" in error_text(outside)
        not_b64 = await call(client, "write_file", sandbox_id=sandbox, path="b", content="%%", encoding="base64")
        assert "base64" in error_text(not_b64)
        template = await call(client, "create_sandbox", template="no-such-template")
        assert "no-such-template" in error_text(template)
        # the server survived all of it
        assert texts(await call(client, "run_code", sandbox_id=sandbox, code="6*7")) == ["42"]


async def test_a_dead_or_deleted_sandbox_is_a_tool_error_that_says_to_make_a_new_one(
        connect: Any, gateway: Gateway) -> None:
    async with connect() as client:
        dead, deleted = await create(client), await create(client)
        died = await call(client, "run_code", sandbox_id=dead, code="import os\nos._exit(1)")
        assert "kernel_died" in error_text(died) and "create_sandbox a fresh one" in error_text(died)
        again = await call(client, "run_code", sandbox_id=dead, code="1")
        assert "kernel_died" in error_text(again) and "create_sandbox a fresh one" in error_text(again)
        with gateway.http() as http:
            assert http.delete(f"/api/v1/sandboxes/{deleted}").status_code == 204
        gone = await call(client, "run_command", sandbox_id=deleted, command="true")
        assert "not_found" in error_text(gone) and "create_sandbox a fresh one" in error_text(gone)
        for sandbox in (dead, deleted):
            assert not (await call(client, "close_sandbox", sandbox_id=sandbox)).isError


async def test_close_sandbox_deletes_it(connect: Any, gateway: Gateway) -> None:
    async with connect() as client:
        sandbox = await create(client)
        assert sandbox in live_sandboxes(gateway)
        closed = await call(client, "close_sandbox", sandbox_id=sandbox)
        assert texts(closed) == [f"closed {sandbox}"]
        assert sandbox not in live_sandboxes(gateway)
        again = await call(client, "run_command", sandbox_id=sandbox, command="true")
        assert "unknown sandbox id" in error_text(again)


async def test_ending_the_session_closes_the_sandboxes_it_left_open(connect: Any, gateway: Gateway) -> None:
    async with connect() as client:
        left_open = {await create(client), await create(client)}
        assert left_open <= live_sandboxes(gateway)
    wait_for(lambda: not left_open & live_sandboxes(gateway), 60, "the session's sandboxes to close")
    wait_for(lambda: all(gateway.container_of(s) is None for s in left_open), 60,
             "the session's containers to go")


async def test_one_session_cannot_reach_another_s_sandboxes(connect: Any) -> None:
    async with connect() as first, connect() as second:
        sandbox = await create(first)
        result = await call(second, "run_code", sandbox_id=sandbox, code="1")
        assert "unknown sandbox id" in error_text(result)



# Raw JSON-RPC, for the tests that signal the server while a session is open (the official
# client's own shutdown would race the signal).
INITIALIZE = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}
CREATE = {"name": "create_sandbox", "arguments": {}}


def message(method: str, params: dict[str, Any] | None = None, request_id: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params or {}}
    return body if request_id is None else {**body, "id": request_id}


def test_sigterm_to_a_stdio_server_closes_its_sandboxes(server_env: dict[str, str], gateway: Gateway) -> None:
    with subprocess.Popen([sys.executable, "-m", "sandcell_gateway.cli", "mcp"], env=server_env,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) as process:
        assert process.stdin is not None and process.stdout is not None
        try:
            def send(body: dict[str, Any]) -> None:
                assert process.stdin is not None
                process.stdin.write(json.dumps(body).encode() + b"\n")
                process.stdin.flush()

            send(message("initialize", INITIALIZE, 1))
            assert json.loads(process.stdout.readline())["id"] == 1
            send(message("notifications/initialized"))
            send(message("tools/call", CREATE, 2))
            sandbox = json.loads(process.stdout.readline())["result"]["structuredContent"]["sandbox_id"]
            assert sandbox in live_sandboxes(gateway)
            process.send_signal(signal.SIGTERM)  # stdin still open: a host's fallback, not its first step
            wait_for(lambda: sandbox not in live_sandboxes(gateway), 30, "the sandbox to close")
        finally:
            process.stdin.close()
            stop(process)


def test_stopping_the_http_server_closes_its_sessions_sandboxes(server_env: dict[str, str], gateway: Gateway,
                                                               tmp_path: Path) -> None:
    with http_server_process(server_env, tmp_path) as (process, url), httpx.Client(timeout=60) as http:
        def post(body: dict[str, Any], session: str | None = None) -> httpx.Response:
            headers = {"Accept": "application/json, text/event-stream"}
            if session is not None:
                headers |= {"mcp-session-id": session, "mcp-protocol-version": INITIALIZE["protocolVersion"]}
            reply = http.post(url, json=body, headers=headers)
            assert reply.status_code < 300, reply.text
            return reply

        session = post(message("initialize", INITIALIZE, 1)).headers["mcp-session-id"]
        post(message("notifications/initialized"), session)
        reply = post(message("tools/call", CREATE, 2), session)
        data = [line[len("data:"):] for line in reply.text.splitlines() if line.startswith("data:")]
        sandbox = json.loads(data[-1])["result"]["structuredContent"]["sandbox_id"]
        assert sandbox in live_sandboxes(gateway)
        stop(process)  # SIGTERM with the session still open
        assert sandbox not in live_sandboxes(gateway)
