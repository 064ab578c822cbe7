"""Streaming throughput: a cell printing 10 MB of stdout, MB/s until the client holds it all.

The same cell on every system; each run checks that every byte arrived (the gateway truncates
only beyond ``max_output_bytes``, 32 MiB per execution).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from jupyter_client.manager import start_new_kernel
from tornado.websocket import WebSocketClientConnection

import sandcell
from sandcell_gateway.testing import GatewayProcess

from .baselines import KernelGateway, ws_execute
from .latency import jupyter_kernel
from .stats import STREAM, Sample

LINE = 1000  # bytes per printed line, newline included
LINES = 10_000
TOTAL = LINE * LINES
MB = 1e6
CODE = f"""
import sys
line = "x" * {LINE - 1} + "\\n"
for _ in range({LINES}):
    sys.stdout.write(line)
"""


def _sample(system: str, times: list[float]) -> Sample:
    return Sample(STREAM, system, times, work=[TOTAL / MB] * len(times), work_unit="MB/s")


def sdk_stream(gw: GatewayProcess, runs: int) -> Sample:
    times = []
    with sandcell.Client(base_url=gw.url, token=gw.token) as client:
        with client.sessions.create() as session:
            gw.wait_ready()  # steady state: the claim's background refill is over
            for _ in range(runs):
                start = time.perf_counter()
                ex = session.execute(CODE)
                times.append(time.perf_counter() - start)
                assert len(ex.stdout) == TOTAL, (len(ex.stdout), ex.error)
    return _sample("sandcell SDK (sync)", times)


async def _ws_stream(ws: WebSocketClientConnection, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        received = 0

        def count(text: str) -> None:
            nonlocal received
            received += len(text)

        start = time.perf_counter()
        await ws_execute(ws, CODE, on_stream=count)
        times.append(time.perf_counter() - start)
        assert received == TOTAL, received
    return times


def jupyter_ws_stream(gw: GatewayProcess, runs: int) -> Sample:
    async def run() -> list[float]:
        async with jupyter_kernel(gw) as ws:
            await asyncio.to_thread(gw.wait_ready)  # steady state, as above
            return await _ws_stream(ws, runs)

    return _sample("sandcell Jupyter WebSocket", asyncio.run(run()))


def kg_stream(kg: KernelGateway, runs: int) -> Sample:
    return _sample("Jupyter Kernel Gateway WebSocket",
                   kg.with_kernel(lambda ws: _ws_stream(ws, runs)))


def raw_stream(runs: int) -> Sample:
    manager, kc = start_new_kernel(kernel_name="python3")
    times = []
    try:
        for _ in range(runs):
            received = 0

            def count(msg: dict[str, Any]) -> None:
                nonlocal received
                if msg["msg_type"] == "stream":
                    received += len(msg["content"]["text"])

            start = time.perf_counter()
            kc.execute_interactive(CODE, output_hook=count, timeout=120)
            times.append(time.perf_counter() - start)
            assert received == TOTAL, received
    finally:
        kc.stop_channels()
        manager.shutdown_kernel(now=True)
    return _sample("raw jupyter_client (local kernel)", times)
