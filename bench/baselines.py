"""The alternatives users would pick instead of Sandcell, measured the same way.

- Jupyter Kernel Gateway (PyPI ``jupyter-kernel-gateway``) on loopback: POST /api/kernels,
  open the channels WebSocket, execute. Its POST answers before the kernel is ready, so we
  time the whole path to the first result.
- A fresh hardened container per request (the original proof of concept's mode), launched
  by Sandcell's own Docker backend, until ``kernel_info`` answers and ``1+1`` returns.
- A local kernel started by ``jupyter_client``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from collections.abc import Callable
from typing import Any

import httpx
from jupyter_client.manager import start_new_kernel
from tornado.websocket import WebSocketClientConnection, websocket_connect

from sandcell_gateway.backend import DockerBackend
from sandcell_gateway.provisioner import KernelProvisioner
from sandcell_gateway.config import load_config
from sandcell_gateway.kernel import KernelConnection
from sandcell_gateway.testing import wait_for

from .stats import FIRST, READY, ROUND_TRIP, Sample


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class KernelGateway:
    """``jupyter kernelgateway`` in a subprocess on a free loopback port."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            ["jupyter", "kernelgateway", "--KernelGatewayApp.ip=127.0.0.1",
             f"--KernelGatewayApp.port={self.port}", f"--KernelGatewayApp.auth_token={self.token}",
             # its default drops stream output beyond 1 MB/s; the stream scenario needs it all
             "--ZMQChannelsWebsocketConnection.limit_rate=False"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.headers = {"Authorization": f"token {self.token}"}
        wait_for(self._up, 60, "Jupyter Kernel Gateway to answer")

    def _up(self) -> bool:
        try:
            return httpx.get(f"{self.url}/api", headers=self.headers, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def with_kernel(self, fn: Callable[[WebSocketClientConnection], Any]) -> Any:
        """Start a kernel, open its channels WebSocket, return ``await fn(ws)``."""
        async def run() -> Any:
            async with httpx.AsyncClient(base_url=self.url, headers=self.headers,
                                         timeout=60) as http:
                kernel = (await http.post("/api/kernels", json={"name": "python3"})).json()
                ws = await websocket_connect(f"ws://127.0.0.1:{self.port}/api/kernels/"
                                             f"{kernel['id']}/channels?token={self.token}")
                try:
                    return await fn(ws)
                finally:
                    ws.close()
                    await http.delete(f"/api/kernels/{kernel['id']}")

        return asyncio.run(run())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


async def ws_execute(ws: WebSocketClientConnection, code: str,
                     on_stream: Callable[[str], object] | None = None) -> dict[str, Any]:
    """Send one execute_request over a Jupyter channels WebSocket; return the execute_result
    content once the reply and the idle status have both arrived. ``on_stream`` gets the text
    of each stdout/stderr message."""
    msg_id = uuid.uuid4().hex
    await ws.write_message(json.dumps({
        "channel": "shell", "header": {"msg_id": msg_id, "msg_type": "execute_request",
                                       "username": "bench", "session": "bench", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True,
                    "user_expressions": {}, "allow_stdin": False}}))
    result: dict[str, Any] = {}
    replied = idle = False
    while not (replied and idle):
        raw = await ws.read_message()
        if raw is None:
            raise RuntimeError("WebSocket closed")
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        replied = replied or kind == "execute_reply"
        idle = idle or (kind == "status" and msg["content"]["execution_state"] == "idle")
        if kind == "execute_result":
            result = msg["content"]
        elif kind == "stream" and on_stream is not None:
            on_stream(msg["content"]["text"])
    return result


def kg_first_result(kg: KernelGateway, runs: int) -> list[Sample]:
    """New kernel to first result, and (a lower bound of time to a ready kernel) the POST alone:
    Kernel Gateway answers it before the kernel is ready."""
    posts: list[float] = []

    async def once(http: httpx.AsyncClient) -> float:
        start = time.perf_counter()
        kernel = (await http.post("/api/kernels", json={"name": "python3"})).json()
        posts.append(time.perf_counter() - start)
        ws = await websocket_connect(
            f"ws://127.0.0.1:{kg.port}/api/kernels/{kernel['id']}/channels?token={kg.token}")
        result = await ws_execute(ws, "1+1")
        elapsed = time.perf_counter() - start
        assert result["data"]["text/plain"] == "2"
        ws.close()
        await http.delete(f"/api/kernels/{kernel['id']}")
        return elapsed

    async def run() -> list[float]:
        async with httpx.AsyncClient(base_url=kg.url, headers=kg.headers, timeout=60) as http:
            return [await once(http) for _ in range(runs)]

    firsts = asyncio.run(run())
    return [Sample(FIRST, "Jupyter Kernel Gateway", firsts),
            Sample(READY, "Jupyter Kernel Gateway POST (not yet ready)", posts)]


def kg_round_trip(kg: KernelGateway, runs: int) -> Sample:
    async def measure(ws: WebSocketClientConnection) -> list[float]:
        times = []
        for i in range(runs + 2):
            start = time.perf_counter()
            await ws_execute(ws, "1+1")
            if i >= 2:  # warm-up
                times.append(time.perf_counter() - start)
        return times

    return Sample(ROUND_TRIP, "Jupyter Kernel Gateway WebSocket", kg.with_kernel(measure))


def container_per_request(runs: int) -> list[Sample]:
    """A fresh hardened container per request, ready when kernel_info answers, then 1+1."""
    ready: list[float] = []

    async def run(kernels: KernelProvisioner, template: Any) -> list[float]:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            handle = await kernels.launch(template, "sbx_" + secrets.token_hex(8))
            kernel = KernelConnection(handle.connection)
            try:
                await kernel.wait_ready(60)
                ready.append(time.perf_counter() - start)
                pending = await kernel.execute("1+1")
                while await pending.next() is not None:
                    pass
                times.append(time.perf_counter() - start)
            finally:
                kernel.close()
                await kernels.remove(handle)
        return times

    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(gateway_id=f"bench-{secrets.token_hex(4)}", state_dir=Path(tmp))
        backend = DockerBackend(config)
        try:
            times = asyncio.run(run(KernelProvisioner(config, backend), config.template("python")))
        finally:
            backend.close()
    return [Sample(FIRST, "container per request", times),
            Sample(READY, "container per request (kernel_info answers)", ready)]


def local_kernel_first_result(runs: int) -> list[Sample]:
    times, ready = [], []
    for _ in range(runs):
        start = time.perf_counter()
        manager, kc = start_new_kernel(kernel_name="python3")
        ready.append(time.perf_counter() - start)
        kc.execute_interactive("1+1", output_hook=lambda msg: None)
        times.append(time.perf_counter() - start)
        kc.stop_channels()
        manager.shutdown_kernel(now=True)
    return [Sample(FIRST, "local jupyter_client kernel", times),
            Sample(READY, "local jupyter_client kernel", ready)]
