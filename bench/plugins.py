"""``python -m bench.plugins``: warm plugin invocations vs a fresh container per call.

Warm: ``client.plugins.invoke`` through a real gateway (a pooled worker, proven ready by
``Health``, destroyed after the call). Cold: what the original platform did per call, minus
its fixed sleeps — start a hardened worker container, wait for ``Health`` and ``Init``,
``Invoke``, remove the container — with the gateway's own ``WorkerLauncher``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import httpx

import sandcell
from sandcell_gateway.backend import DockerBackend
from sandcell_gateway.config import load_config
from sandcell_gateway.imagebuild import ensure_images
from sandcell_gateway.plugins.registry import PluginRegistry
from sandcell_gateway.plugins.workers import WorkerLauncher
from sandcell_gateway.testing import GatewayProcess, wait_for
from sandcell_plugin._proto import plugin_pb2 as pb

from .stats import Sample, table

CONFIG = """
[gateway]
gateway_id = "{gateway_id}"

[templates.python]
min_ready = 0
max_total = 1

[plugins]
min_ready = 1
max_total = 4
"""


def warm(runs: int, plugin: str) -> list[float]:
    with tempfile.TemporaryDirectory() as workdir, GatewayProcess(Path(workdir), CONFIG) as gw:
        with sandcell.Client(base_url=gw.url, token=gw.token) as client, gw.http() as http:
            samples = []
            for i in range(runs):
                # measure the warm path: wait until the pool has refilled
                wait_for(lambda: _ready(http, plugin) >= 1, 60, "a warm worker")
                started = time.perf_counter()
                output = client.plugins.invoke(plugin, operand1=10, operand2=i, progress=False)
                samples.append(time.perf_counter() - started)
                assert output["operand2"] == i
    return samples


def _ready(http: httpx.Client, plugin: str) -> int:
    return int(http.get(f"/api/v1/plugins/{plugin}").json()["pool"]["ready"])


async def cold(runs: int, plugin: str) -> list[float]:
    config = load_config()
    backend = DockerBackend(config)
    launcher = WorkerLauncher(config, backend)
    manifest = PluginRegistry.discover(config.plugins).get(plugin)
    launcher.reset()
    samples = []
    try:
        for i in range(runs):
            started = time.perf_counter()
            worker = await launcher.launch(manifest, launcher.template(manifest), f"wkr_cold{i:012d}")
            try:
                request = pb.InvokeRequest(input_json=json.dumps({"operand1": 10, "operand2": i}))
                events = [event async for event in worker.stub.Invoke(request, timeout=30)]
                assert events[-1].HasField("completed")
            finally:
                await launcher.destroy(worker)
            samples.append(time.perf_counter() - started)
    finally:
        backend.close()
    return samples


def plugin_samples(runs: int, plugin: str = "add_numbers") -> list[Sample]:
    """Warm and cold invocation latency of ``plugin``, as table rows."""
    ensure_images(["plugin-python", "plugin-java"])
    scenario = f"plugin invoke {plugin}"
    return [Sample(scenario, "sandcell warm worker", warm(runs, plugin)),
            Sample(scenario, "container per call", asyncio.run(cold(runs, plugin)))]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.plugins", description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--plugin", default="add_numbers",
                        help="add_numbers, multiply_numbers (Java) or subtract_numbers (Python)")
    args = parser.parse_args()
    samples = plugin_samples(args.runs, args.plugin)
    print(table(samples, {samples[0].scenario: "container per call"}))


if __name__ == "__main__":
    main()
