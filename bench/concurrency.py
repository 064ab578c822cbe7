"""Concurrency: N sessions (async SDK, gathered) claiming and executing `1+1` at once.

Per level: start with a full pool, drain it — ``POOL`` claims shared by N concurrent workers,
each claim followed by `1+1`, sessions held so the pool cannot recycle them — then release
them and time the refill back to ``POOL`` ready. Rates: claims/s over the drain, sandboxes/s
from the end of the drain until the pool is full again.
"""

from __future__ import annotations

import asyncio
import time

import sandcell
from sandcell_gateway.testing import GatewayProcess

from .latency import check
from .stats import Sample

POOL = 16
CONFIG = f"""
[gateway]
gateway_id = "{{gateway_id}}"

[templates.python]
min_ready = {POOL}
max_total = {POOL + 8}
"""


async def drain(client: sandcell.AsyncClient,
                sessions: int) -> tuple[list[sandcell.AsyncSession], list[float]]:
    """``POOL`` claims + `1+1`, ``sessions`` at a time; return the held sessions and each
    claim's latency (claim to result)."""
    held: list[sandcell.AsyncSession] = []
    latencies: list[float] = []
    remaining = POOL

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            session = await client.sessions.create()
            held.append(session)
            check(await session.execute("1+1"))
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(worker() for _ in range(sessions)))
    return held, latencies


async def level(gw: GatewayProcess, sessions: int, reps: int) -> list[Sample]:
    drains, refills, refilled, latencies = [], [], [], []
    async with sandcell.AsyncClient(base_url=gw.url, token=gw.token, timeout=120) as client:
        for _ in range(reps):
            await asyncio.to_thread(gw.wait_ready, count=POOL, timeout=300)
            start = time.perf_counter()
            held, times = await drain(client, sessions)
            drained = time.perf_counter()
            drains.append(drained - start)
            latencies += times
            ready_after_drain = gw.health()["pools"]["python"]["ready"]
            await asyncio.gather(*(session.close() for session in held))
            await asyncio.to_thread(gw.wait_ready, count=POOL, timeout=300)
            refills.append(time.perf_counter() - drained)
            refilled.append(POOL - ready_after_drain)
    system = f"sandcell SDK (async), {sessions} at once"
    return [Sample(f"claim + 1+1, drain {POOL} warm", system, drains,
                   work=[POOL] * reps, work_unit="claims/s"),
            Sample("claim + 1+1 latency under load", system, latencies),
            Sample(f"refill to {POOL} ready after drain", system, refills,
                   work=[float(n) for n in refilled], work_unit="sandboxes/s")]


def concurrency_samples(gw: GatewayProcess, levels: list[int], reps: int) -> list[Sample]:
    samples: list[Sample] = []
    for sessions in levels:
        samples += asyncio.run(level(gw, sessions, reps))
    return samples
