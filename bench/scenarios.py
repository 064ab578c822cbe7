"""What we measure: time to a claimed sandbox, and the `1+1` round trip."""

from __future__ import annotations

import asyncio
import time

from jupyter_client.manager import start_new_kernel

import sandcell
from sandcell_gateway.testing import GatewayProcess

from .stats import Sample, timed


def claim_latency(gw: GatewayProcess, runs: int) -> Sample:
    """POST /api/v1/sandboxes with a ready pool (we refill between claims and time only the
    POST), as a client on the same machine sees it."""
    times = []
    with gw.http() as http:
        for _ in range(runs):
            gw.wait_ready()
            start = time.perf_counter()
            response = http.post("/api/v1/sandboxes", json={})
            times.append(time.perf_counter() - start)
            response.raise_for_status()
            http.delete(f"/api/v1/sandboxes/{response.json()['id']}")
    return Sample("claim a warm sandbox", "sandcell REST", times)


def sdk_round_trip(gw: GatewayProcess, runs: int) -> Sample:
    with sandcell.Client(base_url=gw.url, token=gw.token) as client:
        with client.sessions.create() as session:
            times = timed(lambda: _check(session.execute("1+1")), runs)
    return Sample("1+1 round trip", "sandcell SDK (sync)", times)


def async_sdk_round_trip(gw: GatewayProcess, runs: int) -> Sample:
    async def run() -> list[float]:
        async with sandcell.AsyncClient(base_url=gw.url, token=gw.token) as client:
            async with await client.sessions.create() as session:
                for _ in range(2):
                    await session.execute("1+1")
                times = []
                for _ in range(runs):
                    start = time.perf_counter()
                    _check(await session.execute("1+1"))
                    times.append(time.perf_counter() - start)
                return times

    return Sample("1+1 round trip", "sandcell SDK (async)", asyncio.run(run()))


def raw_jupyter_round_trip(runs: int) -> Sample:
    """A local ipykernel driven by jupyter_client: the floor any gateway adds to."""
    manager, kc = start_new_kernel(kernel_name="python3")
    try:
        times = timed(lambda: _raw_execute(kc), runs)
    finally:
        kc.stop_channels()
        manager.shutdown_kernel(now=True)
    return Sample("1+1 round trip", "raw jupyter_client (local kernel)", times)


def _raw_execute(kc: object) -> None:
    # execute_interactive returns after the reply AND the idle status, like the SDK does
    reply = kc.execute_interactive("1+1", output_hook=lambda msg: None)  # type: ignore[attr-defined]
    assert reply["content"]["status"] == "ok"


def _check(ex: sandcell.Execution) -> None:
    assert ex.text == "2", ex


def first_result(gw: GatewayProcess, runs: int) -> Sample:
    """From asking for a new sandbox to holding the first `1+1` result."""
    times = []
    with sandcell.Client(base_url=gw.url, token=gw.token) as client:
        for _ in range(runs):
            gw.wait_ready()
            start = time.perf_counter()
            with client.sessions.create() as session:
                _check(session.execute("1+1"))
                times.append(time.perf_counter() - start)
    return Sample("new kernel to first 1+1 result", "sandcell SDK (warm claim)", times)


__all__ = ["async_sdk_round_trip", "claim_latency", "first_result",
           "raw_jupyter_round_trip", "sdk_round_trip"]
