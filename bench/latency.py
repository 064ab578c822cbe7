"""Sandcell's latencies: time to a claimed kernel, new kernel to first result, `1+1`.

Each is measured through the SDK, REST, and Sandcell's Jupyter API (``POST /api/kernels`` and
the ``/api/kernels/{id}/channels`` WebSocket, driven by the same client code as Kernel
Gateway's in :mod:`bench.baselines`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from jupyter_client.manager import start_new_kernel
from tornado.websocket import WebSocketClientConnection, websocket_connect

import sandcell
from sandcell_gateway.testing import GatewayProcess

from .baselines import ws_execute
from .stats import FIRST, READY, ROUND_TRIP, Sample, timed


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
    return Sample(READY, "sandcell REST claim", times)


def jupyter_claim_latency(gw: GatewayProcess, runs: int) -> Sample:
    """POST /api/kernels, Jupyter's way to ask for a kernel: a warm claim, ready on return."""
    times = []
    with jupyter_http(gw) as http:
        for _ in range(runs):
            gw.wait_ready()
            start = time.perf_counter()
            response = http.post("/api/kernels", json={"name": "python"})
            times.append(time.perf_counter() - start)
            response.raise_for_status()
            http.delete(f"/api/kernels/{response.json()['id']}")
    return Sample(READY, "sandcell POST /api/kernels", times)


def jupyter_http(gw: GatewayProcess) -> httpx.Client:
    return httpx.Client(base_url=gw.url, timeout=60, headers={"Authorization": f"token {gw.token}"})


def sdk_round_trip(gw: GatewayProcess, runs: int) -> Sample:
    with sandcell.Client(base_url=gw.url, token=gw.token) as client:
        with client.sessions.create() as session:
            gw.wait_ready()  # steady state: the claim's background refill is over
            times = timed(lambda: check(session.execute("1+1")), runs)
    return Sample(ROUND_TRIP, "sandcell SDK (sync)", times)


def async_sdk_round_trip(gw: GatewayProcess, runs: int) -> Sample:
    async def run() -> list[float]:
        async with sandcell.AsyncClient(base_url=gw.url, token=gw.token) as client:
            async with await client.sessions.create() as session:
                await asyncio.to_thread(gw.wait_ready)  # steady state, as above
                return await async_timed(lambda: session.execute("1+1"), runs)

    return Sample(ROUND_TRIP, "sandcell SDK (async)", asyncio.run(run()))


def jupyter_ws_round_trip(gw: GatewayProcess, runs: int) -> Sample:
    async def run() -> list[float]:
        async with jupyter_kernel(gw) as ws:
            await asyncio.to_thread(gw.wait_ready)  # steady state, as above
            return await async_timed(lambda: ws_execute(ws, "1+1"), runs)

    return Sample(ROUND_TRIP, "sandcell Jupyter WebSocket", asyncio.run(run()))


async def async_timed(fn: Callable[[], Awaitable[Any]], runs: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        await fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - start)
    return times


class jupyter_kernel:  # noqa: N801 - used like a function: ``async with jupyter_kernel(gw)``
    """Claim a kernel through POST /api/kernels and open its channels WebSocket."""

    def __init__(self, gw: GatewayProcess, http: httpx.AsyncClient | None = None) -> None:
        self.gw = gw
        self.owns_http = http is None
        self.http = http or jupyter_async_http(gw)
        self.kernel_id = ""
        self.ws: WebSocketClientConnection | None = None

    async def __aenter__(self) -> WebSocketClientConnection:
        response = await self.http.post("/api/kernels", json={"name": "python"})
        self.kernel_id = response.raise_for_status().json()["id"]
        ws_url = self.gw.url.replace("http", "ws", 1)
        self.ws = await websocket_connect(
            f"{ws_url}/api/kernels/{self.kernel_id}/channels?token={self.gw.token}")
        return self.ws

    async def __aexit__(self, *exc_info: object) -> None:
        if self.ws is not None:
            self.ws.close()
        await self.http.delete(f"/api/kernels/{self.kernel_id}")
        if self.owns_http:
            await self.http.aclose()


def jupyter_async_http(gw: GatewayProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=gw.url, timeout=60,
                             headers={"Authorization": f"token {gw.token}"})


def raw_jupyter_round_trip(runs: int) -> Sample:
    """A local ipykernel driven by jupyter_client: the floor any gateway adds to."""
    manager, kc = start_new_kernel(kernel_name="python3")
    try:
        times = timed(lambda: _raw_execute(kc), runs)
    finally:
        kc.stop_channels()
        manager.shutdown_kernel(now=True)
    return Sample(ROUND_TRIP, "raw jupyter_client (local kernel)", times)


def _raw_execute(kc: Any) -> None:
    # execute_interactive returns after the reply AND the idle status, like the SDK does
    reply = kc.execute_interactive("1+1", output_hook=lambda msg: None)
    assert reply["content"]["status"] == "ok"


def check(ex: sandcell.Execution) -> None:
    assert ex.text == "2", ex


def first_result(gw: GatewayProcess, runs: int) -> Sample:
    """From asking for a new sandbox to holding the first `1+1` result."""
    times = []
    with sandcell.Client(base_url=gw.url, token=gw.token) as client:
        for _ in range(runs):
            gw.wait_ready()
            start = time.perf_counter()
            with client.sessions.create() as session:
                check(session.execute("1+1"))
                times.append(time.perf_counter() - start)
    return Sample(FIRST, "sandcell SDK (warm claim)", times)


def jupyter_first_result(gw: GatewayProcess, runs: int) -> Sample:
    """POST /api/kernels, open the channels WebSocket, execute: Kernel Gateway's path."""
    async def run() -> list[float]:
        times = []
        async with jupyter_async_http(gw) as http:
            for _ in range(runs):
                await asyncio.to_thread(gw.wait_ready)
                start = time.perf_counter()
                async with jupyter_kernel(gw, http) as ws:
                    result = await ws_execute(ws, "1+1")
                    times.append(time.perf_counter() - start)
                assert result["data"]["text/plain"] == "2", result
        return times

    return Sample(FIRST, "sandcell Jupyter API (warm claim)", asyncio.run(run()))
