"""``python -m bench.oci_runtimes``: runc against crun, run directly on an OCI bundle.

Docker runs containers with the runtimes its daemon has registered (here only runc); using
``crun`` needs daemon config, which a shared machine's daemon must not be given. So this bench
measures the runtimes themselves, outside Docker, on a bundle made from the sandbox image's
root filesystem: ``RUNTIME run`` of ``/bin/true`` (the runtime's own cost: namespaces, cgroup,
mounts, pivot_root) and of the kernel's imports, as uid 1000, read-only root, new network
namespace. CPU is the runtime process's and its children's (``wait4``'s rusage).

Needs root and both runtimes (``apt-get install crun``). With the daemon configured for it
(``"runtimes": {"crun": {"path": "/usr/bin/crun"}}`` in daemon.json), a template chooses it
with ``runtime = "crun"`` (docs/sandbox-cost.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

IMAGE = "sandcell/python:latest"
# crun 1.8 refuses a cgroup v1 host whose v2 hierarchy has a controller ("cgroups in hybrid
# mode not supported"; here hugetlb): each runtime runs in a private mount namespace without
# that hierarchy (the host's mounts are untouched), so both get the same wrapper and cgroup v1
HIDE_V2 = "umount /sys/fs/cgroup/unified 2>/dev/null; exec \"$@\""
RUNTIMES = {name: ["unshare", "-m", "--propagation", "private", "sh", "-c", HIDE_V2, "sh", name]
            for name in ("runc", "crun")}
WORKLOADS = {"/bin/true": ["/bin/true"],
             "kernel imports": ["/opt/sandcell/bin/python", "-c", "import ipykernel.kernelapp"]}


def bundle(root: Path, image: str) -> Path:
    """An OCI bundle in ``root``: the image's filesystem and ``runc spec``'s config, hardened."""
    rootfs = root / "rootfs"
    rootfs.mkdir()
    container = subprocess.run(["docker", "create", image], check=True, capture_output=True,
                               text=True).stdout.strip()
    try:
        export = subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(rootfs)], stdin=export.stdout, check=True)
        if export.wait() != 0:
            raise RuntimeError(f"docker export {container} failed")
    finally:
        subprocess.run(["docker", "rm", "-f", container], check=True, capture_output=True)
    subprocess.run(["runc", "spec"], cwd=root, check=True)
    config = json.loads((root / "config.json").read_text())
    config["process"].update(terminal=False, user={"uid": 1000, "gid": 1000},
                             noNewPrivileges=True, env=["PATH=/usr/bin:/bin", "HOME=/tmp"])
    config["root"]["readonly"] = True
    (root / "config.json").write_text(json.dumps(config))
    return root


def run_once(runtime: str, root: Path, args: list[str], n: int) -> tuple[float, float]:
    """Wall and CPU seconds of one ``runtime run`` of ``args`` in the bundle at ``root``."""
    config = json.loads((root / "config.json").read_text())
    config["process"]["args"] = args
    (root / "config.json").write_text(json.dumps(config))
    started = time.perf_counter()
    command = RUNTIMES.get(runtime, [runtime])
    child = subprocess.Popen([*command, "run", "--bundle", str(root), f"bench-{os.getpid()}-{n}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{runtime} run {args} failed: {child.stderr.read().decode()}")
    return wall, usage.ru_utime + usage.ru_stime


def measure(runtimes: list[str], runs: int, image: str) -> list[dict[str, object]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = bundle(Path(tmp), image)
        for workload, args in WORKLOADS.items():
            times: dict[str, list[tuple[float, float]]] = {r: [] for r in runtimes}
            for n in range(runs + 1):
                for runtime in runtimes:  # interleaved: the machine's noise hits both alike
                    sample = run_once(runtime, root, args, n)
                    if n:  # the first of each is a warm-up (page cache)
                        times[runtime].append(sample)
            for runtime, samples in times.items():
                rows.append({"workload": workload, "runtime": runtime, "n": runs,
                             "wall_ms": statistics.median(w for w, _ in samples) * 1000,
                             "cpu_ms": statistics.median(c for _, c in samples) * 1000})
    return rows


def table(rows: list[dict[str, object]]) -> str:
    out = ["| workload | runtime | N | wall p50 | CPU p50 | CPU vs runc |", "|---|---|---:|---:|---:|---:|"]
    for row in rows:
        base = next(r for r in rows if r["workload"] == row["workload"] and r["runtime"] == "runc")
        ratio = f"{float(row['cpu_ms']) / float(base['cpu_ms']):.2f}x"  # type: ignore[arg-type]
        out.append(f"| {row['workload']} | {row['runtime']} | {row['n']} | {row['wall_ms']:.0f} ms "
                   f"| {row['cpu_ms']:.0f} ms | {ratio} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.oci_runtimes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--runtimes", default="runc,crun")
    parser.add_argument("--image", default=IMAGE)
    args = parser.parse_args()
    runtimes = args.runtimes.split(",")
    if missing := [r for r in runtimes if shutil.which(r) is None]:
        parser.error(f"not installed: {', '.join(missing)} (apt-get install {' '.join(missing)})")
    print(table(measure(runtimes, args.runs, args.image)))


if __name__ == "__main__":
    main()
