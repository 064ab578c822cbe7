"""``python -m bench.sandbox_cost``: what one fresh sandbox costs, phase by phase.

One sandbox at a time, ``--runs`` times, made by the gateway's own code (its Docker backend,
kernel provisioner, guard and kernel connection) exactly as a pool makes one:

* ``create``: the container, hardened and labelled (``POST /containers/create``);
* ``start``: the engine starts it (runc, tini, the entrypoint);
* ``kernel up``: from started to the kernel's ``kernel_info`` reply: the interpreter, the
  kernel's imports and its initialisation;
* ``IOPub proof``: a silent cell whose output is seen (the pool's readiness proof);
* ``remove``: off the request path since the reaper, but still the machine's CPU.

Each phase gets its wall time and CPU: the whole machine's (``/proc/stat``, less the idle rate
measured just before), the container engine's (dockerd, containerd, the shim, fuse-overlayfs)
and the container's own cgroup. The sum of the first four is the CPU to produce one ready
sandbox; ``cores / that`` is the most sandboxes a second this machine can make.

Also measured, once per run in a throwaway container: the kernel's imports alone
(``import ipykernel.kernelapp``, the process's own CPU), for the phase the kernel spends most in.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sandcell_gateway.backend import DockerBackend
from sandcell_gateway.config import GatewayConfig, load_config
from sandcell_gateway.containers import LaunchSpec
from sandcell_gateway.guard import KernelGuard
from sandcell_gateway.imagebuild import ensure_images
from sandcell_gateway.kernel import KernelConnection
from sandcell_gateway.provisioner import KernelProvisioner
from sandcell_gateway.service import message_limits
from sandcell_gateway.wire import new_sandbox_id

from .cpu import CORES, container_cpu, engine_cpu, idle_rate, machine_cpu

PHASES = ("create", "start", "kernel up", "IOPub proof", "remove")
PRODUCE = PHASES[:4]
IMPORTS = "kernel imports (in-container process CPU)"
CONFIG = """
[gateway]
gateway_id = "bench-cost-{stamp}"
state_dir = "{state}"
store_path = "{state}/store.sqlite"

[templates.python]
min_ready = 0
max_total = 1
runtime = "{runtime}"
"""


@dataclasses.dataclass
class Phase:
    wall: float
    machine: float  # CPU seconds, the whole machine, idle rate removed
    engine: float
    container: float


class Meter:
    """Times one sandbox's phases; ``container_id`` is set once there is one."""

    def __init__(self, idle: float) -> None:
        self.idle = idle
        self.container_id = ""
        self.phases: dict[str, Phase] = {}

    def _read(self) -> tuple[float, float, float, float]:
        inside = container_cpu(self.container_id) if self.container_id else 0.0
        return time.perf_counter(), machine_cpu(), engine_cpu(), inside

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        w0, m0, e0, c0 = self._read()
        yield
        w1, m1, e1, c1 = self._read()
        c0 = c0 if c0 <= c1 else 0.0  # the container's cgroup appeared during the phase
        self.phases[name] = Phase(w1 - w0, max(0.0, m1 - m0 - self.idle * (w1 - w0)),
                                  e1 - e0, c1 - c0)


class PhasedDocker:
    """The gateway's DockerBackend, with its launch's create and start timed apart."""

    def __init__(self, backend: DockerBackend, meter: Meter) -> None:
        self.backend, self.meter = backend, meter

    async def launch(self, spec: LaunchSpec) -> str:
        with self.meter.phase("create"):
            self.meter.container_id = await self.backend.create(spec)
        with self.meter.phase("start"):
            await self.backend.start(self.meter.container_id)
        return self.meter.container_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)


async def one_sandbox(config: GatewayConfig, backend: DockerBackend, guard: KernelGuard,
                      idle: float) -> dict[str, Phase]:
    meter = Meter(idle)
    kernels = KernelProvisioner(config, PhasedDocker(backend, meter))  # type: ignore[arg-type]
    kernels.prepare()
    template = config.template("python")
    handle = await kernels.launch(template, new_sandbox_id())
    kernel = KernelConnection(handle.connection, output_limit=config.max_output_bytes,
                              guard=guard.sandbox(handle.sandbox_id, lambda reason: None),
                              max_message_bytes=config.max_kernel_message_bytes)
    try:
        with meter.phase("kernel up"):
            await kernel.wait_ready(config.ready_timeout)
        with meter.phase("IOPub proof"):
            await kernel.warm_up()
    finally:
        kernel.close()
        with meter.phase("remove"):
            await kernels.remove(handle)
    return meter.phases


def kernel_imports(image: str) -> float:
    """CPU seconds ``import ipykernel.kernelapp`` takes in a fresh container of ``image``."""
    code = "import time, ipykernel.kernelapp; print(time.process_time())"
    out = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint",
                          "/opt/sandcell/bin/python", image, "-c", code],
                         check=True, capture_output=True, text=True, timeout=120)
    return float(out.stdout.split()[-1])


async def measure(config: GatewayConfig, runs: int) -> tuple[list[dict[str, Phase]], list[float]]:
    backend = DockerBackend(config)
    guard = KernelGuard(message_limits(config), config.state_dir / "relays")
    guard.reset()
    idle = idle_rate()
    image = config.template("python").image
    samples, imports = [], []
    await one_sandbox(config, backend, guard, idle)  # not counted: page cache, first connects
    for _ in range(runs):
        samples.append(await one_sandbox(config, backend, guard, idle))
        imports.append(await asyncio.to_thread(kernel_imports, image))
    return samples, imports


def table(system: str, samples: list[dict[str, Phase]], imports: list[float]) -> str:
    def med(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.0f} ms"

    out = [f"**{system}**, {len(samples)} sandboxes one at a time (medians)", "",
           "| phase | wall | CPU, machine | CPU, engine | CPU, container |",
           "|---|---:|---:|---:|---:|"]
    for name in PHASES:
        out.append(f"| {name} | " + " | ".join(
            med([getattr(s[name], f) for s in samples])
            for f in ("wall", "machine", "engine", "container")) + " |")
    produce = [sum(s[name].machine for name in PRODUCE) for s in samples]
    wall = [sum(s[name].wall for name in PRODUCE) for s in samples]
    out.append(f"| **produce one** ({' + '.join(PRODUCE)}) | {med(wall)} | **{med(produce)}** "
               f"| | |")
    out.append(f"| {IMPORTS} | | {med(imports)} | | |")
    limit = CORES / statistics.median(produce)
    out += ["", (f"Physical limit: {CORES} cores / {statistics.median(produce):.3f} CPU-s per "
                 f"ready sandbox = **{limit:.1f} sandboxes/s** (produce one, nothing else).")]
    return "\n".join(out)


def as_json(samples: list[dict[str, Phase]], imports: list[float]) -> list[dict[str, Any]]:
    return [{"phases": {n: dataclasses.asdict(p) for n, p in s.items()}, "imports_cpu": i}
            for s, i in zip(samples, imports, strict=True)]


def run(runs: int, runtimes: list[str]) -> tuple[str, dict[str, Any]]:
    ensure_images(["python"])
    tables, results = [], {}
    for runtime in runtimes:
        with tempfile.TemporaryDirectory() as state:
            text = CONFIG.format(stamp=int(time.time()), state=state, runtime=runtime)
            (Path(state) / "gateway.toml").write_text(text)
            config = load_config(Path(state) / "gateway.toml")
            samples, imports = asyncio.run(measure(config, runs))
        name = runtime or "the daemon's default runtime"
        tables.append(table(name, samples, imports))
        results[name] = as_json(samples, imports)
    return "\n\n".join(tables), results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sandbox_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--runtimes", default="",
                        help="comma-separated OCI runtimes registered with the daemon "
                             "(e.g. ',crun' for the default and crun); default: the default")
    parser.add_argument("--json", type=Path, default=Path("bench/results/sandbox_cost.json"))
    args = parser.parse_args()
    text, results = run(args.runs, args.runtimes.split(","))
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
