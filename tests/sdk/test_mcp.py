"""``sandcell.mcp`` without a gateway: the tools' schemas, and the errors that need no sandbox.

The official client talks to the server in memory (one MCP session, its lifespan and all);
tests/integration/test_mcp.py drives the same tools over stdio and HTTP against real sandboxes.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import pytest
from mcp import ClientSession
from mcp.shared.memory import create_connected_server_and_client_session
from mcp.types import CallToolResult, TextContent
from sandcell.mcp import TOOLS, build_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nobody listens on (bound, never listened to, while the test runs)."""
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        yield int(reserved.getsockname()[1])


@pytest.fixture
async def client(closed_port: int) -> AsyncIterator[ClientSession]:
    server = build_server(base_url=f"http://127.0.0.1:{closed_port}")
    async with create_connected_server_and_client_session(server) as session:
        yield session


def error_text(result: CallToolResult) -> str:
    assert result.isError, result
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


async def test_the_tools_take_a_sandbox_id_and_bounded_timeouts(client: ClientSession) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert sorted(tools) == sorted(TOOLS)
    for name in TOOLS:
        assert tools[name].description, name
        if name != "create_sandbox":
            assert "sandbox_id" in tools[name].inputSchema["required"], name
    timeout = tools["run_code"].inputSchema["properties"]["timeout"]
    assert (timeout["exclusiveMinimum"], timeout["maximum"]) == (0, 86400)


async def test_an_unknown_sandbox_id_says_where_ids_come_from(client: ClientSession) -> None:
    for tool, arguments in [("run_code", {"code": "1"}), ("run_command", {"command": "true"}),
                            ("read_file", {"path": "a"}), ("list_files", {}),
                            ("write_file", {"path": "a", "content": ""}), ("close_sandbox", {})]:
        result = await client.call_tool(tool, {"sandbox_id": "sbx_nope", **arguments})
        assert "unknown sandbox id 'sbx_nope'" in error_text(result) and "create_sandbox" in error_text(result)


async def test_an_unreachable_gateway_is_a_tool_error_naming_the_settings(client: ClientSession,
                                                                          closed_port: int) -> None:
    result = await client.call_tool("create_sandbox", {})
    text = error_text(result)
    assert f"127.0.0.1:{closed_port}" in text and "SANDCELL_URL" in text and "SANDCELL_TOKEN" in text
    # and the server answers on
    assert "unknown sandbox id" in error_text(await client.call_tool("run_code", {"sandbox_id": "x", "code": "1"}))
