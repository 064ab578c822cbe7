"""Warm pools on real Docker: refill, concurrent claims, exhaustion, shutdown cleanup."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import sandcell

from .conftest import Gateway, start_gateway, wait_for

pytestmark = pytest.mark.docker


@pytest.mark.anyio
async def test_concurrent_claims_are_distinct_and_pool_refills(gateway: Gateway) -> None:
    gateway.wait_ready()
    async with sandcell.AsyncClient(base_url=gateway.url, token=gateway.token) as client:
        sessions = await asyncio.gather(*(client.sessions.create() for _ in range(4)))
        assert len({s.id for s in sessions}) == 4
        outputs = await asyncio.gather(*(s.execute("import os; os.getpid()") for s in sessions))
        assert all(o.error is None for o in outputs)
        await asyncio.gather(*(s.close() for s in sessions))
    gateway.wait_ready()
    assert gateway.health()["pools"]["python"]["claimed"] == 0


def test_deleted_sandboxes_are_destroyed_not_reused(client: sandcell.Client,
                                                    gateway: Gateway) -> None:
    with client.sessions.create() as session:
        sandbox_id = session.id
    wait_for(lambda: all(c["Labels"]["org.sandcell.sandbox"] != sandbox_id
                         for c in gateway.containers()), 30, "the container to be removed")


def test_exhausted_pool_is_a_clear_503(client: sandcell.Client, gateway: Gateway) -> None:
    gateway.wait_ready("tiny")
    with client.sessions.create(template="tiny"):
        with pytest.raises(sandcell.ServiceUnavailableError) as info:
            client.sessions.create(template="tiny")
    assert info.value.status_code == 503 and info.value.code == "pool_exhausted"


def test_unknown_template_is_a_400(client: sandcell.Client) -> None:
    with pytest.raises(sandcell.BadRequestError) as info:
        client.sessions.create(template="nope")
    assert info.value.code == "unknown_template" and "python" in str(info.value)


def test_shutdown_removes_every_container(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path)
    try:
        gw.wait_ready()
        with sandcell.Client(base_url=gw.url, token=gw.token) as client:
            client.sessions.create()
        assert len(gw.containers()) >= 3
    finally:
        code = gw.stop()
    assert code == 0, gw.log()
    assert gw.containers() == []
    assert not list(gw.runtime_dir.glob("gateway-*.json"))
