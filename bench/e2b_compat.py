"""``python -m bench.e2b_compat``: E2B's own SDK on Sandcell, ``Sandbox.create()`` + the first
``run_code``, against Sandcell's SDK doing the same.

One gateway with the agent on; each run claims a warm sandbox (the pool is refilled and
waited for between runs, outside the timing), runs ``x=41; x+1``, checks ``42`` and kills
the sandbox. Rows:

* ``e2b_code_interpreter.Sandbox.create()``: the unmodified SDK, create alone;
* ``... create() + run_code``: what an E2B user waits for before the first answer;
* ``sandcell sessions.create() + execute``: the same through Sandcell's own SDK.

E2B publishes ~150 ms for create alone on self-hosted infrastructure (e2b-dev/infra#1750);
that number is quoted, not measured here (docs/e2b.md).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sandcell
from sandcell_gateway.imagebuild import ensure_images
from sandcell_gateway.testing import GatewayProcess

from .stats import Sample, table

CONFIG = """
[gateway]
gateway_id = "{gateway_id}"

[templates.python]
min_ready = 2
max_total = 4

[plugins]
enabled = false
"""
CREATE, FIRST_RUN = "create()", "create() + first run_code"
E2B, SANDCELL = "e2b SDK on Sandcell", "sandcell SDK"


def measure(gw: GatewayProcess, runs: int, once: Callable[[], float | tuple[float, float]]
            ) -> list[tuple[float, float]]:
    """``once()`` ``runs`` times, each with a warm sandbox ready (waited for untimed)."""
    results = []
    for _ in range(runs + 1):  # the first is a warm-up (imports, connections)
        gw.wait_ready("python", 1)
        result = once()
        results.append(result if isinstance(result, tuple) else (result, result))
    return results[1:]


def run(runs: int) -> list[Sample]:
    ensure_images(["python"])
    with tempfile.TemporaryDirectory() as workdir, GatewayProcess(Path(workdir), CONFIG) as gw:
        gw.wait_ready("python", 2)
        os.environ.update(E2B_API_URL=f"{gw.url}/e2b/api", E2B_SANDBOX_URL=f"{gw.url}/e2b/sbx",
                          E2B_API_KEY=gw.token)
        from e2b_code_interpreter import Sandbox  # reads the three variables

        def e2b_once() -> tuple[float, float]:
            start = time.perf_counter()
            sbx = Sandbox.create()
            created = time.perf_counter()
            assert sbx.run_code("x=41; x+1").text == "42"
            done = time.perf_counter()
            sbx.kill()
            return created - start, done - start

        with sandcell.Client(base_url=gw.url, token=gw.token) as client:
            def sandcell_once() -> float:
                start = time.perf_counter()
                with client.sessions.create() as session:
                    assert session.execute("x=41; x+1").text == "42"
                    return time.perf_counter() - start

            e2b = measure(gw, runs, e2b_once)
            ours = [t for t, _ in measure(gw, runs, sandcell_once)]
    return [Sample(CREATE, E2B, [c for c, _ in e2b]),
            Sample(FIRST_RUN, E2B, [f for _, f in e2b]),
            Sample(FIRST_RUN, SANDCELL, ours)]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.e2b_compat", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", type=Path, default=Path("bench/results/e2b_compat.json"))
    args = parser.parse_args()
    samples = run(args.runs)
    print(table(samples, {FIRST_RUN: SANDCELL}))
    print("\nself-hosted E2B, published (e2b-dev/infra#1750): create() ~150 ms, "
          "first run_code not published")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps([s.as_dict() for s in samples], indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
