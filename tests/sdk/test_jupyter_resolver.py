"""The provisioner's WebSocket resolver: an IP literal needs no lookup (nor a worker thread)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

pytest.importorskip("jupyter_client")
from sandcell.jupyter._bridge import LiteralResolver


def resolve(host: str, port: int = 8765) -> tuple[list[tuple[int, Any]], list[str]]:
    looked_up: list[str] = []

    async def main() -> list[tuple[int, Any]]:
        loop = asyncio.get_running_loop()
        real = loop.getaddrinfo

        async def recording(host: str, *args: Any, **kwargs: Any) -> Any:
            looked_up.append(host)
            return await real(host, *args, **kwargs)

        loop.getaddrinfo = recording  # type: ignore[method-assign]
        return await LiteralResolver().resolve(host, port)

    return asyncio.run(main()), looked_up


def test_an_ip_literal_is_not_looked_up() -> None:
    assert resolve("127.0.0.1") == ([(socket.AF_INET, ("127.0.0.1", 8765))], [])
    assert resolve("[::1]") == ([(socket.AF_INET6, ("::1", 8765, 0, 0))], [])


def test_a_host_name_is_looked_up() -> None:
    addresses, looked_up = resolve("localhost")
    assert looked_up == ["localhost"] and addresses
