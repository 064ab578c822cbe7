"""``python -m bench``: measure Sandcell against its baselines in one run; print a table.

Scenarios (``--scenarios``, comma-separated; default all): ready (time to a ready kernel),
first (new kernel to first 1+1 result), roundtrip (1+1), stream (10 MB stdout),
concurrency, footprint, plugins, and the benches that run on their own too, each with its
defaults and its table, written beside ``--json`` under its own name: faults
(``python -m bench.faults``), cost (``python -m bench.sandbox_cost``, a fresh sandbox phase by
phase), churn (``python -m bench.churn``, sandboxes under sustained load) and calculator
(``python -m bench.calculator``, the calculator API under sustained load).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from sandcell_gateway.imagebuild import ensure_images
from sandcell_gateway.testing import GatewayProcess

from . import (agent_surface, baselines, calculator, churn, concurrency, faults, footprint,
               latency, sandbox_cost, throughput)
from .plugins import plugin_samples
from .stats import FIRST, READY, ROUND_TRIP, STREAM, Sample, Target, table, targets_table

SCENARIOS = ("ready", "first", "roundtrip", "stream", "concurrency", "footprint", "plugins",
             "faults", "cost", "churn", "calculator", "agent")
OWN_TABLES = {"faults", "cost", "churn", "calculator", "agent"}  # benches with a table of their own
CONFIG = """
[gateway]
gateway_id = "{gateway_id}"

[templates.python]
min_ready = 2
max_total = 8

# plugins have their own gateway (bench/plugins.py); here their warm JVMs would share the CPU
# with the latency scenarios while they start
[plugins]
enabled = false
"""

SANDCELL_FIRST = "sandcell SDK (warm claim)"
TARGETS = [
    Target(FIRST, SANDCELL_FIRST, "Jupyter Kernel Gateway", 30, under_ms=20),
    Target(FIRST, SANDCELL_FIRST, "container per request", 30),
    Target(FIRST, "sandcell Jupyter API (warm claim)", "Jupyter Kernel Gateway", 30, under_ms=20),
    Target(ROUND_TRIP, "sandcell SDK (sync)", "raw jupyter_client (local kernel)", 1 / 1.5),
    Target("plugin invoke add_numbers", "sandcell warm worker", "container per call", 20),
]

BASELINES = {ROUND_TRIP: "raw jupyter_client (local kernel)",
             STREAM: "raw jupyter_client (local kernel)",
             "plugin invoke add_numbers": "container per call",
             FIRST: "Jupyter Kernel Gateway",
             READY: "container per request (kernel_info answers)"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50, help="repetitions per warm scenario "
                        "(cold starts, streams and concurrency run fewer)")
    parser.add_argument("--concurrency", default="1,4,16", help="sessions at once, e.g. 1,4,16")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--json", type=Path, default=Path("bench/results/latest.json"))
    args = parser.parse_args()
    args.scenarios = set(args.scenarios.split(","))
    if unknown := args.scenarios - set(SCENARIOS):
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    args.concurrency = [int(n) for n in args.concurrency.split(",")]
    return args


def run_baselines(want: set[str], runs: int) -> list[Sample]:
    cold, few = max(3, runs // 5), max(3, runs // 10)
    samples: list[Sample] = []
    if "roundtrip" in want:
        samples.append(latency.raw_jupyter_round_trip(runs))
    if "stream" in want:
        samples.append(throughput.raw_stream(few))
    if want & {"roundtrip", "first", "ready", "stream"}:
        kg = baselines.KernelGateway()
        try:
            samples += _pick(want, {
                "roundtrip": lambda: [baselines.kg_round_trip(kg, runs)],
                "first": lambda: baselines.kg_first_result(kg, cold),
                "stream": lambda: [throughput.kg_stream(kg, few)]})
        finally:
            kg.stop()
    if want & {"first", "ready"}:
        samples += baselines.container_per_request(cold) + baselines.local_kernel_first_result(cold)
    return samples


def run_sandcell(want: set[str], runs: int) -> list[Sample]:
    if not want & {"roundtrip", "first", "ready", "stream"}:
        return []
    with tempfile.TemporaryDirectory() as tmp, GatewayProcess(Path(tmp), CONFIG) as gw:
        gw.wait_ready()
        return _pick(want, {
            "roundtrip": lambda: [latency.sdk_round_trip(gw, runs),
                                  latency.async_sdk_round_trip(gw, runs),
                                  latency.jupyter_ws_round_trip(gw, runs)],
            "ready": lambda: [latency.claim_latency(gw, runs),
                              latency.jupyter_claim_latency(gw, runs)],
            "first": lambda: [latency.first_result(gw, max(5, runs // 2)),
                              latency.jupyter_first_result(gw, max(5, runs // 2))],
            "stream": lambda: [throughput.sdk_stream(gw, max(3, runs // 10)),
                               throughput.jupyter_ws_stream(gw, max(3, runs // 10))]})


def run_big_pool(want: set[str], runs: int, levels: list[int]) -> list[Sample]:
    if not want & {"concurrency", "footprint"}:
        return []
    with tempfile.TemporaryDirectory() as tmp, \
            GatewayProcess(Path(tmp), concurrency.CONFIG) as gw:
        return _pick(want, {
            "footprint": lambda: footprint.footprint_samples(gw),
            "concurrency": lambda: concurrency.concurrency_samples(
                gw, levels, max(1, runs // 10))})


def _pick(want: set[str], runners: dict[str, Callable[[], list[Sample]]]) -> list[Sample]:
    return [s for name, run in runners.items() if name in want for s in run()]


def main() -> None:
    args = parse_args()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    ensure_images(["python"])
    samples = run_baselines(args.scenarios, args.runs)
    samples += run_sandcell(args.scenarios, args.runs)
    samples += run_big_pool(args.scenarios, args.runs, args.concurrency)
    if "plugins" in args.scenarios:
        samples += plugin_samples(max(3, args.runs // 5))
    if args.scenarios - OWN_TABLES:
        print(table(samples, BASELINES))
        print()
        print(targets_table(TARGETS, samples))
        args.json.write_text(json.dumps([s.as_dict() for s in samples], indent=2))
        print(f"\nwrote {args.json}")
    if "faults" in args.scenarios:
        run_faults(args.json.with_name("faults.json"))
    if "cost" in args.scenarios:
        text, results = sandbox_cost.run(10, [""])
        print(f"\n{text}")
        args.json.with_name("sandbox_cost.json").write_text(json.dumps(results, indent=2))
    if "churn" in args.scenarios:
        print()
        churn.report(churn.run(churn.Plan()), args.json.with_name("churn.json"))
    if "calculator" in args.scenarios:
        print()
        calculator.report(calculator.run(calculator.Plan(400, 8)),
                          args.json.with_name("calculator.json"))
    if "agent" in args.scenarios:
        print()
        agent_surface.report(agent_surface.run(100, 3), args.json.with_name("agent_surface.json"))


def run_faults(path: Path) -> None:
    rows = faults.run_faults()
    print()
    print(faults.table(rows))
    faults.write_json(rows, path)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
