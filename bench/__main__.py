"""``python -m bench``: measure Sandcell against its baselines in one run; print a table."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from sandcell_gateway.imagebuild import ensure_images
from sandcell_gateway.testing import GatewayProcess

from . import baselines, scenarios
from .plugins import plugin_samples
from .stats import Sample, Target, table, targets_table

CONFIG = """
[gateway]
gateway_id = "{gateway_id}"

[templates.python]
min_ready = 2
max_total = 8
"""

FIRST = "new kernel to first 1+1 result"
TARGETS = [
    Target(FIRST, "sandcell SDK (warm claim)", "Jupyter Kernel Gateway", 30, under_ms=20),
    Target(FIRST, "sandcell SDK (warm claim)", "container per request", 30),
    Target("1+1 round trip", "sandcell SDK (sync)", "raw jupyter_client (local kernel)", 1 / 1.5),
    Target("plugin invoke add_numbers", "sandcell warm worker", "container per call", 20),
]

BASELINES = {"1+1 round trip": "raw jupyter_client (local kernel)",
             "plugin invoke add_numbers": "container per call",
             "new kernel to first 1+1 result": "Jupyter Kernel Gateway"}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=50, help="repetitions per scenario")
    parser.add_argument("--json", type=Path, default=Path("bench/results/latest.json"))
    parser.add_argument("--no-plugins", action="store_true", help="skip the plugin scenario")
    args = parser.parse_args()
    ensure_images(["python"])
    cold_runs = max(3, args.runs // 5)
    samples: list[Sample] = [scenarios.raw_jupyter_round_trip(args.runs)]
    kg = baselines.KernelGateway()
    try:
        samples += [baselines.kg_round_trip(kg, args.runs),
                    baselines.kg_first_result(kg, cold_runs)]
    finally:
        kg.stop()
    samples += [baselines.container_per_request(cold_runs),
                baselines.local_kernel_first_result(cold_runs)]
    with tempfile.TemporaryDirectory() as tmp, GatewayProcess(Path(tmp), CONFIG) as gw:
        gw.wait_ready()
        samples += [scenarios.sdk_round_trip(gw, args.runs),
                    scenarios.async_sdk_round_trip(gw, args.runs),
                    scenarios.claim_latency(gw, args.runs),
                    scenarios.first_result(gw, max(5, args.runs // 2))]
    if not args.no_plugins:
        samples += plugin_samples(cold_runs)
    print(table(samples, BASELINES))
    print()
    print(targets_table(TARGETS, samples))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps([s.as_dict() for s in samples], indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
