"""``python -m bench.churn``: sandboxes under sustained load, not one spaced-out claim.

Two gateways in one run, one after the other, each on the shipped templates but for what the
config changes:

* **baseline** (the old settings, or the TOML ``--baseline-config`` names): a fixed pool of
  ``min_ready = 2`` (``adaptive = false``), two containers started at once, ``/usr`` and
  ``/opt`` read through the storage driver, of the image as it was before the leaner kernel
  (``sandcell/python:baseline``, bench/baseline_image.py), which has no sandbox agent;
* **sandcell**: the shipped defaults (the ready target follows the claim rate, and each
  sandbox runs the agent).

Scenarios, on each gateway, all through the SDK as a user would write them:

* ``churn, one client``: create → ``1+1`` → delete in a loop; sessions/s, and each session's
  p50/p95/p99;
* ``churn, 8 clients``: eight such loops at once; sessions/s in all, each claim's p95;
* ``claims back to back``: a new sandbox → its first ``1+1``, one after another;
* ``claims at 2/s (Poisson)``: claims arriving at random at a steady rate for ``--poisson``
  seconds (each session runs ``1+1``, then is deleted); the claim's p99;
* ``DELETE``: how long a delete keeps its caller.

Next to each rate: the CPU one session cost the machine (``/proc/stat``, less the idle rate
measured before), and the physical limit that implies on this machine's cores.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import json
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import sandcell
from sandcell_gateway.imagebuild import ensure_images
from sandcell_gateway.testing import GatewayProcess

from .baseline_image import ensure_baseline_image
from .cpu import CORES, SPLIT, idle_rate, machine_cpu, split_snapshot

BASELINE = """
[gateway]
gateway_id = "{gateway_id}"
bind_image_dirs = "never"  # /usr and /opt through fuse-overlayfs, as before
launch_concurrency = 2

[templates.python]
image = "{image}"
min_ready = 2
max_total = 16
adaptive = false
agent = false  # the image predates the sandbox agent

[plugins]
enabled = false
"""
SHIPPED = """
[gateway]
gateway_id = "{gateway_id}"

[plugins]
enabled = false
"""
SYSTEMS = ("baseline (fixed pool of 2)", "sandcell (defaults)")
ONE, EIGHT = "churn, one client", "churn, 8 clients"
BACK_TO_BACK, POISSON, DELETE = ("claims back to back, new sandbox → first 1+1",
                                 "claims at 2/s (Poisson), claim", "DELETE")


@dataclasses.dataclass
class Row:
    """One scenario on one system: latencies (s), how many sessions, wall time, machine CPU."""

    scenario: str
    system: str
    latencies: list[float]
    sessions: int
    wall: float
    cpu: float
    claims: list[float] = dataclasses.field(default_factory=list)
    deletes: list[float] = dataclasses.field(default_factory=list)
    refused: int = 0  # claims that got 503 after waiting out the claim timeout
    split: dict[str, float] = dataclasses.field(default_factory=dict)  # CPU s by who spent it

    def pct(self, q: float, values: list[float] | None = None) -> float:
        ordered = sorted(self.latencies if values is None else values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

    @property
    def rate(self) -> float:
        return self.sessions / self.wall

    @property
    def cpu_per_session(self) -> float:
        return self.cpu / max(1, self.sessions)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "scenario": self.scenario, "system": self.system, "n": len(self.latencies),
            "sessions_per_s": round(self.rate, 2), "p50_ms": round(self.pct(0.5), 1),
            "p95_ms": round(self.pct(0.95), 1), "p99_ms": round(self.pct(0.99), 1),
            "cpu_s_per_session": round(self.cpu_per_session, 3), "refused": self.refused}
        if self.claims:
            out["claim_p95_ms"] = round(self.pct(0.95, self.claims), 1)
        return out


@dataclasses.dataclass
class Session:
    claim: float   # s, create returned (or refused)
    total: float   # s, create → 1+1 → delete returned
    delete: float  # s, the delete alone
    refused: bool = False  # 503: no sandbox became ready within the claim timeout


def one_session(client: sandcell.Client) -> Session:
    started = time.perf_counter()
    try:
        session = client.sessions.create(template="python")
    except sandcell.ServiceUnavailableError:
        waited = time.perf_counter() - started
        return Session(waited, waited, 0.0, refused=True)
    claimed = time.perf_counter()
    try:
        result = session.execute("1+1", timeout=60)
        assert result.results[0].text == "2", result
    finally:
        deleting = time.perf_counter()
        session.close()
    ended = time.perf_counter()
    return Session(claimed - started, ended - started, ended - deleting)


def sdk(gw: GatewayProcess) -> sandcell.Client:
    return sandcell.Client(base_url=gw.url, token=gw.token, timeout=120)


def loop(gw: GatewayProcess, seconds: float, start: threading.Barrier | None = None
         ) -> list[Session]:
    with sdk(gw) as client:
        if start is not None:
            start.wait()
        deadline, done = time.perf_counter() + seconds, []
        while time.perf_counter() < deadline:
            done.append(one_session(client))
        return done


def clients(gw: GatewayProcess, seconds: float, count: int = 8) -> list[Session]:
    start = threading.Barrier(count)
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        runs = list(pool.map(lambda _: loop(gw, seconds, start), range(count)))
    return [s for run in runs for s in run]


def back_to_back(gw: GatewayProcess, n: int) -> list[Session]:
    """A new sandbox → its first 1+1 (the delete is not part of the latency)."""
    with sdk(gw) as client:
        out = []
        for _ in range(n):
            session = one_session(client)
            out.append(Session(session.claim, session.total - session.delete, session.delete))
        return out


def poisson(gw: GatewayProcess, seconds: float, rate: float = 2.0, seed: int = 7
            ) -> list[Session]:
    """Claims arriving at ``rate`` a second at random (exponential gaps), each its own thread."""
    gaps = random.Random(seed)
    with sdk(gw) as client, concurrent.futures.ThreadPoolExecutor(32) as pool:
        futures, at, began = [], 0.0, time.perf_counter()
        while at < seconds:
            pause = began + at - time.perf_counter()
            if pause > 0:
                time.sleep(pause)  # the arrival schedule, not a synchronisation
            futures.append(pool.submit(one_session, client))
            at += gaps.expovariate(rate)
        return [f.result() for f in futures]


def measure(gw: GatewayProcess, scenario: str, system: str, idle: float,
            run: Callable[[], list[Session]], pick: Callable[[Session], float]) -> Row:
    assert gw.process is not None
    before, cpu, wall = split_snapshot(gw.process.pid), machine_cpu(), time.perf_counter()
    sessions = run()
    wall = time.perf_counter() - wall
    cpu = max(0.0, machine_cpu() - cpu - idle * wall)
    after = split_snapshot(gw.process.pid)
    served = [s for s in sessions if not s.refused]
    return Row(scenario, system, [pick(s) for s in sessions], len(served), wall, cpu,
               claims=[s.claim for s in sessions], deletes=[s.delete for s in served],
               refused=len(sessions) - len(served),
               split={k: after[k] - before[k] for k in SPLIT})


@contextlib.contextmanager
def gateway(config: str) -> Iterator[GatewayProcess]:
    with tempfile.TemporaryDirectory() as workdir, GatewayProcess(Path(workdir), config) as gw:
        gw.wait_ready()
        yield gw


@dataclasses.dataclass(frozen=True)
class Plan:
    seconds: float = 20.0   # per churn scenario
    claims: int = 30        # back to back
    poisson: float = 60.0   # s of Poisson arrivals
    baseline_config: Path | None = None


def run_system(system: str, config: str, plan: Plan, idle: float) -> list[Row]:
    rows = []
    with gateway(config) as gw:
        scenarios: list[tuple[str, Callable[[], list[Session]], Callable[[Session], float]]] = [
            (ONE, lambda: loop(gw, plan.seconds), lambda s: s.total),
            (EIGHT, lambda: clients(gw, plan.seconds), lambda s: s.total),
            (BACK_TO_BACK, lambda: back_to_back(gw, plan.claims), lambda s: s.total),
            (POISSON, lambda: poisson(gw, plan.poisson), lambda s: s.claim)]
        for scenario, run, pick in scenarios:
            gw.wait_ready(timeout=300)  # each scenario starts on a pool filled to its floor
            rows.append(measure(gw, scenario, system, idle, run, pick))
    one = rows[0]
    rows.append(Row(DELETE, system, one.deletes, one.sessions, one.wall, one.cpu))
    return rows


def run(plan: Plan) -> list[Row]:
    ensure_images(["python"])
    idle = idle_rate()
    if plan.baseline_config is not None:
        baseline = plan.baseline_config.read_text()
    else:
        baseline = BASELINE.replace("{image}", ensure_baseline_image())
    return (run_system(SYSTEMS[0], baseline, plan, idle)
            + run_system(SYSTEMS[1], SHIPPED, plan, idle))


def table(rows: list[Row]) -> str:
    out = [("| scenario | system | N | refused | sessions/s | p50 | p95 | p99 | claim p95 | "
            f"CPU per session | limit on {CORES} cores | vs baseline |"),
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        base = next(r for r in rows if r.scenario == row.scenario and r.system == SYSTEMS[0])
        ratio = "baseline" if row is base else f"{base.pct(0.5) / row.pct(0.5):.1f}x faster p50"
        rate = "" if row.scenario == DELETE else f"{row.rate:.2f}"
        cpu = "" if row.scenario == DELETE else f"{row.cpu_per_session * 1000:.0f} ms"
        limit = "" if row.scenario == DELETE else f"{CORES / max(row.cpu_per_session, 1e-9):.1f}/s"
        claim = f"{row.pct(0.95, row.claims):.0f} ms" if row.claims else ""
        refused = "" if row.scenario == DELETE else str(row.refused)
        out.append(f"| {row.scenario} | {row.system} | {len(row.latencies)} | {refused} | {rate} | "
                   f"{row.pct(0.5):.0f} ms | {row.pct(0.95):.0f} ms | {row.pct(0.99):.0f} ms | "
                   f"{claim} | {cpu} | {limit} | {ratio} |")
    return "\n".join(out)


TARGETS = [
    (ONE, "≥ 5 sessions/s", lambda r: r.rate >= 5 and not r.refused),
    (EIGHT, "≥ 5 sessions/s total, each claim ≤ 100 ms p95",
     lambda r: r.rate >= 5 and r.pct(0.95, r.claims) <= 100 and not r.refused),
    (POISSON, "claim p99 ≤ 50 ms", lambda r: r.pct(0.99) <= 50 and not r.refused)]


def split_table(rows: list[Row]) -> str:
    """Each scenario's CPU per session by who spent it: what bounds the rate."""
    out = ["| scenario | system | " + " | ".join(SPLIT) + " | sum |",
           "|---|---|" + "---:|" * (len(SPLIT) + 1)]
    for row in rows:
        if row.split:
            per = [row.split[k] / max(1, row.sessions) * 1000 for k in SPLIT]
            out.append(f"| {row.scenario} | {row.system} | "
                       + " | ".join(f"{v:.0f} ms" for v in per) + f" | {sum(per):.0f} ms |")
    return "\n".join(out)


def targets_table(rows: list[Row]) -> str:
    out = ["| target | measured | result |", "|---|---|---|"]
    for scenario, words, ok in TARGETS:
        row = next(r for r in rows if r.scenario == scenario and r.system == SYSTEMS[1])
        out.append(f"| {scenario}: {words} | {row.rate:.2f} sessions/s, p99 {row.pct(0.99):.0f} "
                   f"ms, claim p95 {row.pct(0.95, row.claims):.0f} ms | "
                   f"{'pass' if ok(row) else 'FAIL'} |")
    return "\n".join(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=20.0, help="per churn scenario")
    parser.add_argument("--claims", type=int, default=30, help="claims back to back")
    parser.add_argument("--poisson", type=float, default=60.0,
                        help="seconds of Poisson arrivals at 2 claims/s")
    parser.add_argument("--baseline-config", type=Path, default=None,
                        help="gateway TOML for the baseline ({gateway_id} where the id goes); "
                             "default: a fixed pool of 2 of the image before issue 13")


def plan_from(args: argparse.Namespace) -> Plan:
    return Plan(args.seconds, args.claims, args.poisson, args.baseline_config)


def report(rows: list[Row], json_path: Path | None) -> None:
    print(table(rows))
    print()
    print(split_table(rows))
    print()
    print(targets_table(rows))
    print("\nCPU: the whole machine's, less its idle rate before the run, over the scenario, "
          "per session served. Refused: 503 after the claim timeout (counted in the claim "
          "latencies, not in sessions/s). DELETE: the one-client loop's deletes. The split: "
          "CPU per session by who spent it (bench/cpu.py SPLIT; the sandboxes made to replace "
          "the claimed ones are in it, those still starting at the end only in part).")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps([row.as_dict() for row in rows], indent=2))
        print(f"wrote {json_path}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.churn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--json", type=Path, default=Path("bench/results/churn.json"))
    args = parser.parse_args()
    report(run(plan_from(args)), args.json)


if __name__ == "__main__":
    main()
