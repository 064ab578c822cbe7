"""``python -m bench.agent_surface``: files and commands through the sandbox agent.

One gateway (its template runs the agent, the default), one session, all through the SDK as an
agent would call it:

* ``files.write + files.read, 1 KiB``: one round trip each, the bytes checked;
* ``100 MiB upload`` / ``100 MiB download``: ``files.upload`` of a local file, then
  ``files.download`` of it, checked by sha256; MB/s each way;
* ``commands.run("true")``: a process started, waited for and its exit reported;

and the baseline in the same run, on the same container: ``docker exec CONTAINER true`` (the
CLI, as a user would type it) and the engine's exec API alone (docker-py, no CLI start).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

import docker

import sandcell
from sandcell_gateway.imagebuild import ensure_images
from sandcell_gateway.testing import GatewayProcess

from .stats import MIB, Sample, table, timed

CONFIG = """
[gateway]
gateway_id = "{gateway_id}"

[templates.python]
min_ready = 1
max_total = 2

[plugins]
enabled = false
"""
SANDCELL, CLI, API = "sandcell (SDK)", "docker exec (CLI)", "docker exec (engine API)"
ROUND_TRIP, RUN_TRUE = "files.write + files.read, 1 KiB", 'commands.run("true")'
UPLOAD, DOWNLOAD = "100 MiB upload", "100 MiB download"
BASELINES = {RUN_TRUE: CLI}
TARGETS = [(ROUND_TRIP, "≤ 5 ms p50", lambda s: s.median_ms <= 5),
           (UPLOAD, "≥ 200 MB/s", lambda s: (s.rate or 0) >= 200),
           (DOWNLOAD, "≥ 200 MB/s", lambda s: (s.rate or 0) >= 200),
           (RUN_TRUE, "≤ 10 ms p50", lambda s: s.median_ms <= 10)]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def run(runs: int, big_runs: int) -> list[Sample]:
    ensure_images(["python"])
    with tempfile.TemporaryDirectory() as workdir, GatewayProcess(Path(workdir), CONFIG) as gw, \
            sandcell.Client(base_url=gw.url, token=gw.token, timeout=300) as client, \
            client.sessions.create() as session:
        gw.wait_ready()
        payload = os.urandom(1024)

        def round_trip() -> None:
            session.files.write("rt.bin", payload)
            assert session.files.read("rt.bin") == payload

        def run_true() -> None:
            assert session.commands.run("true", timeout=30).exit_code == 0

        samples = [Sample(ROUND_TRIP, SANDCELL, timed(round_trip, runs)),
                   Sample(RUN_TRUE, SANDCELL, timed(run_true, runs))]
        summary = gw.container_of(session.id)
        assert summary is not None
        container = summary["Id"]
        engine = docker.APIClient()

        def exec_cli() -> None:
            subprocess.run(["docker", "exec", container, "true"], check=True)

        def exec_api() -> None:
            exec_id = engine.exec_create(container, ["true"])["Id"]
            engine.exec_start(exec_id)
            assert engine.exec_inspect(exec_id)["ExitCode"] == 0

        samples += [Sample(RUN_TRUE, CLI, timed(exec_cli, runs)),
                    Sample(RUN_TRUE, API, timed(exec_api, runs))]
        engine.close()

        local, back = Path(workdir) / "big.bin", Path(workdir) / "back.bin"
        with local.open("wb") as f:
            for _ in range(100):
                f.write(os.urandom(MIB))
        want = sha256(local)
        size = 100 * MIB / 1e6  # MB
        ups, downs = [], []
        for _ in range(big_runs):
            ups += timed(lambda: session.files.upload(local, "big.bin"), 1, warmup=0)
            downs += timed(lambda: session.files.download("big.bin", back), 1, warmup=0)
            assert sha256(back) == want, "the download differs from the upload"
            back.unlink()
        samples += [Sample(UPLOAD, SANDCELL, ups, work=[size] * len(ups), work_unit="MB/s"),
                    Sample(DOWNLOAD, SANDCELL, downs, work=[size] * len(downs), work_unit="MB/s")]
        return samples


def targets_table(samples: list[Sample]) -> str:
    out = ["| target | measured | result |", "|---|---|---|"]
    for scenario, words, ok in TARGETS:
        sample = next(s for s in samples if s.scenario == scenario and s.system == SANDCELL)
        rate = f", {sample.rate:.0f} MB/s" if sample.rate is not None else ""
        out.append(f"| {scenario}: {words} | p50 {sample.median_ms:.1f} ms{rate} | "
                   f"{'pass' if ok(sample) else 'FAIL'} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.agent_surface", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100, help="repetitions of the small calls")
    parser.add_argument("--big-runs", type=int, default=3, help="100 MiB uploads + downloads")
    parser.add_argument("--json", type=Path, default=Path("bench/results/agent_surface.json"))
    args = parser.parse_args()
    report(run(args.runs, args.big_runs), args.json)


def report(samples: list[Sample], json_path: Path) -> None:
    print(table(samples, BASELINES))
    print()
    print(targets_table(samples))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps([s.as_dict() for s in samples], indent=2))
    print(f"wrote {json_path}")


if __name__ == "__main__":
    main()
