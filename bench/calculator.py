"""``python -m bench.calculator``: the calculator API and plugin calls under sustained load.

Two gateways in one run, one after the other, with the same config but for the seed
plugins' isolation policy:

* **baseline** (the old settings): every seed plugin ``"isolation": "per_call"``, a fresh
  worker container per call (or the gateway config ``--baseline-config`` names);
* **sandcell**: the manifests as shipped, the calculator plugins ``"isolation": "shared"``.

Scenarios, on each gateway:

* ``calculator API, one client back to back``: one keep-alive HTTP client doing
  ``POST /api/v1/calculate/add`` in a loop; req/s, p50, p95, p99;
* ``calculator API, 8 clients``: eight such clients at once (threads, one connection each);
* ``plugin invoke, reused worker``: ``client.plugins.invoke("add_numbers", ...)`` in a loop;
* ``calculator API, 8 clients, fresh workers``: on the new gateway only, the same eight
  clients on workers just started, before the others. The calculator is Java: each worker's
  JVM compiles its hot paths during its first couple of hundred calls, so these requests cost
  the workers about three times the CPU of later ones. ``--warm-up`` more requests (not
  measured) then pass before the steady scenarios above, which measure the load a pool serves
  for as long as it runs (``max_age`` recycles a worker every 5 minutes).

Next to each throughput: the CPU one request cost (gateway process, the plugin workers'
containers, and this client) and the physical limit that implies on this machine's cores.
The default tenant's execute rate (100/s by default) is raised for both gateways: the bench
measures the pools, not the rate limit.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import httpx

import sandcell
from sandcell_gateway.config import default_plugins_dir
from sandcell_gateway.imagebuild import ensure_images
from sandcell_gateway.testing import GatewayProcess, wait_for

from .cpu import CORES, container_cpu

CONFIG = """
[gateway]
gateway_id = "{gateway_id}"

[templates.python]
min_ready = 0
max_total = 1

[plugins]
dir = "{plugins_dir}"
min_ready = 1
max_total = 8
claim_timeout = 180  # the baseline's 8 clients wait for JVM starts, two at a time

[tenants.default]
execute_rate = 1000000.0
execute_burst = 1000000
"""
SYSTEMS = ("baseline (per_call)", "sandcell (shared)")
ONE, EIGHT, INVOKE = ("calculator API, one client back to back", "calculator API, 8 clients",
                      "plugin invoke, reused worker")
FRESH = "calculator API, 8 clients, fresh workers"
BASELINE_OF = {FRESH: EIGHT}  # the baseline's every worker is fresh


@dataclasses.dataclass
class Row:
    """One scenario on one system: per-request latencies, wall time and CPU spent."""

    scenario: str
    system: str
    latencies: list[float]
    wall: float
    cpu: float  # seconds of CPU (gateway + workers + client) over the whole scenario
    split: tuple[float, float, float] = (0.0, 0.0, 0.0)  # of which: gateway, workers, client

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall

    @property
    def cpu_ms(self) -> float:
        return self.cpu / len(self.latencies) * 1000

    @property
    def split_ms(self) -> str:
        return " + ".join(f"{c / len(self.latencies) * 1000:.1f}" for c in self.split)

    def as_dict(self) -> dict[str, object]:
        return {"scenario": self.scenario, "system": self.system, "n": len(self.latencies),
                "rate": round(self.rate, 2), "p50": round(self.pct(0.5), 3),
                "p95": round(self.pct(0.95), 3), "p99": round(self.pct(0.99), 3),
                "cpu_ms_per_request": round(self.cpu_ms, 3),
                "cpu_ms_gateway_workers_client": [round(c / len(self.latencies) * 1000, 3)
                                                  for c in self.split]}


class CpuMeter:
    """CPU seconds of the gateway process, this gateway's containers and this process."""

    def __init__(self, gw: GatewayProcess) -> None:
        assert gw.process is not None
        self.pid, self.gateway_id = gw.process.pid, gw.gateway_id
        self.docker = docker.APIClient()
        self._seen: dict[str, float] = {}

    def read(self) -> tuple[float, float, float]:
        """CPU seconds so far: the gateway's, its live containers', this client's."""
        ticks = os.sysconf("SC_CLK_TCK")
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        gateway = (int(fields[11]) + int(fields[12])) / ticks
        return gateway, self._containers(), time.process_time()

    def _containers(self) -> float:
        """Every container of this gateway seen so far, at its last reading: a worker recycled
        (``max_invocations``) keeps what it spent, not less than nothing; one that lived and
        left between two readings is missed."""
        for summary in self.docker.containers(filters={"label": f"org.sandcell.gateway={self.gateway_id}"}):
            self._seen[summary["Id"]] = container_cpu(summary["Id"]) or self._seen.get(summary["Id"], 0.0)
        return sum(self._seen.values())


def per_call_plugins(target: Path) -> Path:
    """The seed plugins with the old policy: a fresh worker for every call."""
    for source in sorted(default_plugins_dir().glob("*/plugin.json")):
        shutil.copytree(source.parent, target / source.parent.name)
        manifest = json.loads(source.read_text()) | {"isolation": "per_call"}
        (target / source.parent.name / "plugin.json").write_text(json.dumps(manifest))
    return target


def baseline_config(workdir: Path, path: Path | None) -> str:
    if path is not None:
        return path.read_text()
    return CONFIG.replace("{plugins_dir}", str(per_call_plugins(workdir / "per-call-plugins")))


def calculate(http: httpx.Client, i: int) -> float:
    started = time.perf_counter()
    response = http.post("/api/v1/calculate/add", json={"operand1": i, "operand2": 1})
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    assert response.json()["result"] == i + 1
    return elapsed


def http_client(gw: GatewayProcess) -> httpx.Client:
    # generous: a baseline call waits for a JVM start, slow on a loaded machine
    return httpx.Client(base_url=gw.url, timeout=300,
                        headers={"Authorization": f"Bearer {gw.token}"})


def one_client(gw: GatewayProcess, n: int) -> list[float]:
    with http_client(gw) as http:
        return [calculate(http, i) for i in range(n)]


def clients(gw: GatewayProcess, n: int, count: int = 8) -> list[float]:
    """``count`` clients at once, ``n`` requests in all; each its own keep-alive connection."""
    start = threading.Barrier(count)

    def run(k: int) -> list[float]:
        with http_client(gw) as http:
            start.wait()
            return [calculate(http, k * n + i) for i in range(max(1, n // count))]

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return [t for times in pool.map(run, range(count)) for t in times]


def invokes(gw: GatewayProcess, n: int) -> list[float]:
    with sandcell.Client(base_url=gw.url, token=gw.token, timeout=300) as client:
        times = []
        for i in range(n):
            started = time.perf_counter()
            output = client.plugins.invoke("add_numbers", operand1=i, operand2=1, progress=False)
            times.append(time.perf_counter() - started)
            assert output["result"] == i + 1
        return times


def measure(scenario: str, system: str, meter: CpuMeter,
            run: Callable[[], list[float]]) -> Row:
    before, wall = meter.read(), time.perf_counter()
    latencies = run()
    wall = time.perf_counter() - wall
    (g0, w0, c0), (g1, w1, c1) = before, meter.read()
    split = (g1 - g0, w1 - w0, c1 - c0)
    return Row(scenario, system, latencies, wall, sum(split), split)


@dataclasses.dataclass(frozen=True)
class Plan:
    requests: int          # per scenario on the new gateway
    baseline_requests: int  # per scenario on the baseline (a container start per call)
    baseline_config: Path | None = None
    warm_up: int = 2400    # requests between the fresh-worker scenario and the steady ones


@contextlib.contextmanager
def gateway(config: str) -> Iterator[GatewayProcess]:
    with tempfile.TemporaryDirectory() as workdir, \
            GatewayProcess(Path(workdir), config.replace("{workdir}", workdir)) as gw:
        wait_for(lambda: gw.health()["plugins"]["add_numbers"]["ready"] >= 1, 180,
                 "a warm add_numbers worker")
        yield gw


def run_system(system: str, config: str, n: int, warm_up: int | None) -> list[Row]:
    """The steady scenarios; with ``warm_up``, first the fresh workers' (see the docstring)."""
    with gateway(config) as gw:
        meter = CpuMeter(gw)
        rows = []
        if warm_up is not None:
            clients(gw, 8 * 3)  # not measured: starts the workers 8 clients at once need
            rows.append(measure(FRESH, system, meter, lambda: clients(gw, n)))
            clients(gw, warm_up)
        return rows + [measure(ONE, system, meter, lambda: one_client(gw, n)),
                       measure(EIGHT, system, meter, lambda: clients(gw, n)),
                       measure(INVOKE, system, meter, lambda: invokes(gw, n))]


def run(plan: Plan) -> list[Row]:
    ensure_images(["plugin-python", "plugin-java"])
    with tempfile.TemporaryDirectory() as workdir:
        rows = run_system(SYSTEMS[0], baseline_config(Path(workdir), plan.baseline_config),
                          plan.baseline_requests, warm_up=None)  # nothing to warm
    shipped = CONFIG.replace("{plugins_dir}", str(default_plugins_dir()))
    return rows + run_system(SYSTEMS[1], shipped, plan.requests, warm_up=plan.warm_up)


def table(rows: list[Row]) -> str:
    out = [("| scenario | system | N | req/s | p50 | p95 | p99 | CPU per request "
            f"(gateway + workers + client) | limit on {CORES} cores | vs baseline |"),
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        scenario = BASELINE_OF.get(row.scenario, row.scenario)
        base = next(r for r in rows if r.scenario == scenario and r.system == SYSTEMS[0])
        ratio = "baseline" if row is base else f"{row.rate / base.rate:.0f}x req/s, " \
            f"{base.pct(0.5) / row.pct(0.5):.0f}x faster p50"
        out.append(f"| {row.scenario} | {row.system} | {len(row.latencies)} | {row.rate:.1f} | "
                   f"{row.pct(0.5):.1f} ms | {row.pct(0.95):.1f} ms | {row.pct(0.99):.1f} ms | "
                   f"{row.cpu_ms:.2f} ms ({row.split_ms}) | "
                   f"{CORES / row.cpu * len(row.latencies):.0f} req/s | {ratio} |")
    return "\n".join(out)


TARGETS = [(ONE, "≥ 100 req/s, p99 ≤ 50 ms", lambda r: r.rate >= 100 and r.pct(0.99) <= 50),
           (EIGHT, "≥ 200 req/s total, p99 ≤ 100 ms", lambda r: r.rate >= 200 and r.pct(0.99) <= 100),
           (INVOKE, "≤ 10 ms p50", lambda r: r.pct(0.5) <= 10)]


def targets_table(rows: list[Row]) -> str:
    out = ["| target | measured | result |", "|---|---|---|"]
    for scenario, words, ok in TARGETS:
        row = next(r for r in rows if r.scenario == scenario and r.system == SYSTEMS[1])
        out.append(f"| {scenario}: {words} | {row.rate:.1f} req/s, p50 {row.pct(0.5):.1f} ms, "
                   f"p99 {row.pct(0.99):.1f} ms | {'pass' if ok(row) else 'FAIL'} |")
    return "\n".join(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=400,
                        help="requests per calculator scenario on the new gateway")
    parser.add_argument("--baseline-requests", type=int, default=8,
                        help="requests per scenario on the baseline (each starts a container)")
    parser.add_argument("--warm-up", type=int, default=Plan.warm_up,
                        help="requests (8 clients, not measured) after the fresh-worker "
                             "scenario, before the steady ones")
    parser.add_argument("--baseline-config", type=Path, default=None,
                        help="gateway TOML for the baseline ({gateway_id} where the id goes); "
                             "default: the shipped config with every seed plugin per_call")


def report(rows: list[Row], json_path: Path | None) -> None:
    print(table(rows))
    print()
    print(targets_table(rows))
    print("\nCPU: gateway process + its live containers + this client; containers removed "
          "during a scenario (the baseline's per-call workers) are not counted.")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps([row.as_dict() for row in rows], indent=2))
        print(f"wrote {json_path}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.calculator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--json", type=Path, default=Path("bench/results/calculator.json"))
    args = parser.parse_args()
    report(run(Plan(args.requests, args.baseline_requests, args.baseline_config, args.warm_up)),
           args.json)


if __name__ == "__main__":
    main()
