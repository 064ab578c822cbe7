"""Footprint: memory of each warm idle sandbox (its container's cgroup), and the gateway's
resident set with 0 and with ``POOL`` claimed sessions.

Container memory is what ``docker stats`` shows: cgroup usage minus inactive page cache.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import docker

import sandcell
from sandcell_gateway.testing import GatewayProcess

from .concurrency import POOL
from .latency import check
from .stats import MIB, Sample


def container_memory(stats: dict[str, Any]) -> float:
    memory = stats["memory_stats"]
    inactive = memory.get("stats", {}).get("total_inactive_file",      # cgroup v1
                                           memory.get("stats", {}).get("inactive_file", 0))
    return float(memory["usage"] - inactive)


def idle_sandbox_memory(gw: GatewayProcess) -> Sample:
    gw.wait_ready(count=POOL, timeout=300)
    client = docker.from_env()
    try:
        containers = client.containers.list(
            filters={"label": [f"org.sandcell.gateway={gw.gateway_id}",
                               "org.sandcell.template=python"]})
        used = [container_memory(c.stats(stream=False, one_shot=True)) / MIB for c in containers]
    finally:
        client.close()
    return Sample("memory per warm idle sandbox", "sandcell (container cgroup)", used, unit="MiB")


def gateway_rss(gw: GatewayProcess) -> float:
    assert gw.process is not None
    for line in Path(f"/proc/{gw.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / MIB
    raise RuntimeError("no VmRSS")


def gateway_memory(gw: GatewayProcess) -> list[Sample]:
    gw.wait_ready(count=POOL, timeout=300)
    idle = gateway_rss(gw)

    async def with_sessions() -> float:
        async with sandcell.AsyncClient(base_url=gw.url, token=gw.token, timeout=120) as client:
            sessions = await asyncio.gather(*(client.sessions.create() for _ in range(POOL)))
            try:
                for ex in await asyncio.gather(*(s.execute("1+1") for s in sessions)):
                    check(ex)
                return gateway_rss(gw)
            finally:
                await asyncio.gather(*(s.close() for s in sessions))

    busy = asyncio.run(with_sessions())
    return [Sample("gateway RSS", "sandcell, 0 sessions", [idle], unit="MiB"),
            Sample("gateway RSS", f"sandcell, {POOL} claimed sessions", [busy], unit="MiB")]


def footprint_samples(gw: GatewayProcess) -> list[Sample]:
    return [idle_sandbox_memory(gw), *gateway_memory(gw)]
