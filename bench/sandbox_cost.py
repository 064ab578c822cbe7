"""``python -m bench.sandbox_cost``: what one fresh sandbox costs, phase by phase.

One sandbox at a time, ``--runs`` times, made by the gateway's own code (its Docker backend,
kernel provisioner, guard and kernel connection) exactly as a pool makes one:

* ``create``: the container, hardened and labelled (``POST /containers/create``);
* ``start``: the engine starts it (runc, tini, the entrypoint);
* ``kernel up``: from started to the kernel's ``kernel_info`` reply: the interpreter, the
  kernel's imports and its initialisation;
* ``IOPub proof``: a silent cell whose output is seen (the pool's readiness proof);
* ``agent up``: for a template with ``agent = true``, until the sandbox agent answers Health
  (it started beside the kernel, so most of its CPU falls in the phases before);
* ``remove``: off the request path since the reaper, but still the machine's CPU.

Each phase gets its wall time and CPU: the whole machine's (``/proc/stat``, less the idle rate
measured just before: exact only on a quiet machine), the container's own cgroup, the engine
processes that serve only this container (its shim with runc, and its fuse-overlayfs mount
when that is the storage driver) and the daemons (dockerd, containerd: shared with whatever
else the machine runs, so only a quiet machine gives their share). The sum over the first four phases is the CPU to produce one ready sandbox;
``cores / that`` is the most sandboxes a second this machine can make.

Also measured, once per run in a throwaway container: the kernel's imports alone
(``import ipykernel.kernelapp``, the process's own CPU), for the phase the kernel spends most in.

The systems, in the same run and interleaved sandbox by sandbox: the image as it was before
the leaner kernel (``bench/baseline_image.py`` builds ``sandcell/python:baseline`` from that
commit's recipe). ``--runtimes`` adds OCI runtimes the daemon has registered.
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

from sandcell_gateway.agent import AgentConnection
from sandcell_gateway.backend import DockerBackend
from sandcell_gateway.config import GatewayConfig, load_config
from sandcell_gateway.containers import LaunchSpec
from sandcell_gateway.guard import KernelGuard
from sandcell_gateway.imagebuild import ensure_images
from sandcell_gateway.kernel import KernelConnection
from sandcell_gateway.provisioner import KernelProvisioner
from sandcell_gateway.service import message_limits
from sandcell_gateway.wire import new_sandbox_id

from .baseline_image import ensure_baseline_image
from .cpu import (CORES, EngineProcess, container_cpu, engine_delta, engine_processes, idle_rate,
                  machine_cpu)

PHASES = ("create", "start", "kernel up", "IOPub proof", "agent up", "remove")
PRODUCE = PHASES[:5]
FIELDS = ("wall", "machine", "container", "own", "daemons")
IMPORTS = "kernel imports (in-container process CPU)"
CONFIG = """
[gateway]
gateway_id = "bench-cost-{stamp}"
state_dir = "{state}"
store_path = "{state}/store.sqlite"

bind_image_dirs = "{bind}"

[templates.python]
image = "{image}"
min_ready = 0
max_total = 1
runtime = "{runtime}"
agent = {agent}
"""


@dataclasses.dataclass
class Phase:
    wall: float
    machine: float  # CPU seconds, the whole machine, idle rate removed
    container: float  # its cgroup
    own: float  # the engine processes of this container alone: its shim, its FUSE mount
    daemons: float  # dockerd, containerd


class Meter:
    """Times one sandbox's phases; ``container_id`` is set once there is one."""

    def __init__(self, idle: float) -> None:
        self.idle = idle
        self.container_id = ""
        self.layer = b"\0"  # its overlay's directory, in its FUSE mount's command line
        self.phases: dict[str, Phase] = {}

    def _read(self) -> tuple[float, float, dict[int, EngineProcess], float]:
        inside = container_cpu(self.container_id) if self.container_id else 0.0
        return time.perf_counter(), machine_cpu(), engine_processes(), inside

    def _own(self, command: bytes) -> bool:
        return bool(self.container_id) and (self.container_id.encode() in command
                                            or self.layer in command)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        w0, m0, e0, c0 = self._read()
        yield
        w1, m1, e1, c1 = self._read()
        c0 = c0 if c0 <= c1 else 0.0  # the container's cgroup appeared during the phase
        own = engine_delta(e0, e1, self._own)
        self.phases[name] = Phase(w1 - w0, max(0.0, m1 - m0 - self.idle * (w1 - w0)), c1 - c0,
                                  own, engine_delta(e0, e1) - own)


class PhasedDocker:
    """The gateway's DockerBackend, with its launch's create and start timed apart."""

    def __init__(self, backend: DockerBackend, meter: Meter) -> None:
        self.backend, self.meter = backend, meter

    async def launch(self, spec: LaunchSpec) -> str:
        with self.meter.phase("create"):
            self.meter.container_id = await self.backend.create(spec)
        info = await self.backend.run(self.backend.client.api.inspect_container,
                                      self.meter.container_id)
        merged = (info["GraphDriver"].get("Data") or {}).get("MergedDir", "")
        if merged:
            self.meter.layer = str(Path(merged).parent).encode()
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
        with meter.phase("agent up"):
            if template.agent:
                agent = AgentConnection(handle.conn_dir)
                await agent.wait_ready(config.ready_timeout)
                await agent.channel.close()
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


@dataclasses.dataclass
class System:
    name: str
    config: GatewayConfig
    samples: list[dict[str, Phase]] = dataclasses.field(default_factory=list)
    imports: list[float] = dataclasses.field(default_factory=list)


async def measure(systems: list[System], runs: int) -> None:
    """``runs`` sandboxes of each system, interleaved: the machine's noise hits all alike."""
    backends = [DockerBackend(system.config) for system in systems]
    guard = KernelGuard(message_limits(systems[0].config), systems[0].config.state_dir / "relays")
    guard.reset()
    for system, backend in zip(systems, backends, strict=True):
        if await backend.run(backend.image_dirs_wanted):  # their one-time copy is not measured
            await backend.run(backend.image_dirs.mounts, system.config.template("python").image)
    idle = idle_rate()
    for system, backend in zip(systems, backends, strict=True):  # page cache, first connects
        await one_sandbox(system.config, backend, guard, idle)
    for _ in range(runs):
        for system, backend in zip(systems, backends, strict=True):
            system.samples.append(await one_sandbox(system.config, backend, guard, idle))
            image = system.config.template("python").image
            system.imports.append(await asyncio.to_thread(kernel_imports, image))


def table(system: str, samples: list[dict[str, Phase]], imports: list[float]) -> str:
    def med(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.0f} ms"

    out = [f"**{system}**, {len(samples)} sandboxes one at a time (medians)", "",
           "| phase | wall | CPU, machine | CPU, container | CPU, its shim + FUSE | "
           "CPU, daemons |", "|---|---:|---:|---:|---:|---:|"]
    for name in PHASES:
        out.append(f"| {name} | " + " | ".join(
            med([getattr(s[name], f) for s in samples])
            for f in FIELDS) + " |")
    out.append(f"| **produce one** ({' + '.join(PRODUCE)}) | " + " | ".join(
        med([sum(getattr(s[name], f) for name in PRODUCE) for s in samples])
        for f in FIELDS) + " |")
    out.append(f"| {IMPORTS} | | | {med(imports)} | | |")
    return "\n".join(out)


def produce_cpu(samples: list[dict[str, Phase]], *fields: str) -> float:
    return statistics.median(sum(getattr(s[name], f) for name in PRODUCE for f in fields)
                             for s in samples)


def summary(systems: list[System]) -> str:
    """One line per system: CPU to produce one ready sandbox, against the first system.

    "Attributed" is the container's cgroup plus its own shim and FUSE mount: exact, whatever
    else the machine runs. "Machine" adds the daemons and the kernel's own threads
    (namespaces, mounts, cgroups), but only a quiet machine makes it exact."""
    base = produce_cpu(systems[0].samples, "container", "own")
    out = ["| system | CPU to produce one, attributed | machine | kernel imports | "
           f"limit on {CORES} cores (attributed) | vs the first |",
           "|---|---:|---:|---:|---:|---:|"]
    for system in systems:
        cpu = produce_cpu(system.samples, "container", "own")
        out.append(f"| {system.name} | {cpu * 1000:.0f} ms | "
                   f"{produce_cpu(system.samples, 'machine') * 1000:.0f} ms | "
                   f"{statistics.median(system.imports) * 1000:.0f} ms | {CORES / cpu:.1f}/s | "
                   f"{cpu / base:.2f}x |")
    return "\n".join(out)


def as_json(samples: list[dict[str, Phase]], imports: list[float]) -> list[dict[str, Any]]:
    return [{"phases": {n: dataclasses.asdict(p) for n, p in s.items()}, "imports_cpu": i}
            for s, i in zip(samples, imports, strict=True)]


def run(runs: int, runtimes: list[str], baseline: bool = True) -> tuple[str, dict[str, Any]]:
    ensure_images(["python"])
    images = [("baseline (image before issue 13, overlay /usr)", ensure_baseline_image(),
               "never", False)] if baseline else []
    images += [("sandcell image, overlay /usr", "sandcell/python:latest", "never", False),
               ("sandcell image, bound /usr and /opt", "sandcell/python:latest", "always", False),
               ("sandcell image + agent, bound /usr and /opt", "sandcell/python:latest",
                "always", True)]
    with tempfile.TemporaryDirectory() as state:
        systems = []
        for label, image, bind, agent in images:
            for runtime in runtimes:
                name = f"{label}, {runtime or 'the default runtime'}"
                path = Path(state) / f"gateway-{len(systems)}.toml"
                path.write_text(CONFIG.format(stamp=int(time.time()), state=state, image=image,
                                              runtime=runtime, bind=bind,
                                              agent=str(agent).lower()))
                systems.append(System(name, load_config(path)))
        asyncio.run(measure(systems, runs))
    tables = [table(s.name, s.samples, s.imports) for s in systems]
    return ("\n\n".join([*tables, summary(systems)]),
            {s.name: as_json(s.samples, s.imports) for s in systems})


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sandbox_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--runtimes", default="",
                        help="comma-separated OCI runtimes registered with the daemon "
                             "(e.g. ',crun' for the default and crun); default: the default")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the baseline image (and its one-time build)")
    parser.add_argument("--json", type=Path, default=Path("bench/results/sandbox_cost.json"))
    args = parser.parse_args()
    text, results = run(args.runs, args.runtimes.split(","), baseline=not args.no_baseline)
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
