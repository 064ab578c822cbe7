"""The client's own transport over real loopback sockets (the sync twin is generated)."""

from __future__ import annotations

import socket

import httpx
import pytest

import sandcell
from sandcell._core import SOCKET_OPTIONS


def _nodelay(response: httpx.Response) -> int:
    """TCP_NODELAY on the client's end of the connection that carried ``response``."""
    sock = response.extensions["network_stream"].get_extra_info("socket")
    return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


@pytest.mark.anyio
async def test_the_default_transport_sets_tcp_nodelay(loopback_server: str) -> None:
    assert (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1) in SOCKET_OPTIONS
    async with sandcell.AsyncClient(base_url=loopback_server, token="t") as client:
        assert (await client.health())["status"] == "ok"
        async with client._api._http.stream("GET", "/api/v1/health") as response:
            assert _nodelay(response) != 0


@pytest.mark.anyio
async def test_a_closed_port_raises_connection_error_naming_the_url() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    async with sandcell.AsyncClient(base_url=url, token="t") as client:
        with pytest.raises(sandcell.APIConnectionError) as caught:
            await client.sessions.list()
    assert url in str(caught.value)
    assert "sandcell serve" in str(caught.value) and "SANDCELL_URL" in str(caught.value)


@pytest.mark.anyio
async def test_an_injected_transport_replaces_the_network() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"sandboxes": []})

    async with sandcell.AsyncClient(base_url="http://nowhere.invalid", transport=httpx.MockTransport(handler)) as client:
        assert await client.sessions.list() == []
    assert seen == ["http://nowhere.invalid/api/v1/sandboxes"]
