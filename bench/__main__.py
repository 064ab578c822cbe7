"""``python -m bench``: measure Sandcell against its baselines in one run; print a table."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from sandcell_gateway.imagebuild import ensure_images
from sandcell_gateway.testing import GatewayProcess

from . import scenarios
from .stats import Sample, table

CONFIG = """
[gateway]
gateway_id = "{gateway_id}"

[templates.python]
min_ready = 2
max_total = 8
"""

BASELINES = {"1+1 round trip": "raw jupyter_client (local kernel)"}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=50, help="repetitions per scenario")
    parser.add_argument("--json", type=Path, default=Path("bench/results/latest.json"))
    args = parser.parse_args()
    ensure_images(["python"])
    samples: list[Sample] = [scenarios.raw_jupyter_round_trip(args.runs)]
    with tempfile.TemporaryDirectory() as tmp, GatewayProcess(Path(tmp), CONFIG) as gw:
        gw.wait_ready()
        samples += [scenarios.sdk_round_trip(gw, args.runs),
                    scenarios.async_sdk_round_trip(gw, args.runs),
                    scenarios.claim_latency(gw, args.runs),
                    scenarios.first_result(gw, max(5, args.runs // 2))]
    print(table(samples, BASELINES))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps([s.as_dict() for s in samples], indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
