"""CPU meters for the sandbox benchmarks: the whole machine, the container engine, a container.

Under load, CPU per sandbox is the currency: two cores can produce at most
``2 / cpu_per_sandbox`` sandboxes a second, whatever the pool does.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
# The container engine's processes, by their (15-character) comm: the daemons, each
# container's shim (whose children, runc among them, it reaps into its own count), runc, and
# the FUSE overlay mounts of the fuse-overlayfs storage driver. Not ``runc:[2:INIT]``: that is
# the container's own first process before it execs the entrypoint.
ENGINE = {"dockerd", "containerd", "runc", "fuse-overlayfs"}
SHIM = "containerd-shim"


def machine_cpu() -> float:
    """CPU seconds the machine spent busy (all cores, all processes) since boot."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    return (user + nice + system + irq + softirq + steal) / TICK


def _ticks(stat: str, first: int, end: int) -> float:
    """Seconds in fields ``first:end`` of a /proc stat line, counted after the command name:
    utime, stime (11, 12), then the reaped children's cutime, cstime (13, 14)."""
    fields = stat.rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[first:end]) / TICK


@dataclasses.dataclass(frozen=True)
class EngineProcess:
    cpu: float  # seconds, its reaped children included
    command: bytes  # its command line, NUL-separated


def engine_processes() -> dict[int, EngineProcess]:
    """Each live container-engine process."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            comm = text[text.index("(") + 1:text.rindex(")")]
            if comm in ENGINE or comm.startswith(SHIM):
                command = (stat.parent / "cmdline").read_bytes()
                found[int(stat.parent.name)] = EngineProcess(_ticks(text, 11, 15), command)
        except OSError:  # it exited while we looked
            continue
    return found


def engine_delta(before: dict[int, EngineProcess], after: dict[int, EngineProcess],
                 mine: Callable[[bytes], bool] = lambda command: True) -> float:
    """What the engine processes whose command line is ``mine`` spent between two snapshots.
    Per process, so one that exited in between (another container's shim) takes nothing
    away; its last moments are lost."""
    return sum(p.cpu - (before[pid].cpu if pid in before else 0.0)
               for pid, p in after.items() if mine(p.command))


def container_cpu(container_id: str) -> float:
    """CPU seconds a running container's cgroup used (cgroup v1 or v2; 0 when unreadable)."""
    for path in (f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage",
                 f"/sys/fs/cgroup/cpu,cpuacct/docker/{container_id}/cpuacct.usage"):
        if os.path.exists(path):
            return int(Path(path).read_text()) / 1e9
    path = f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat"
    if os.path.exists(path):
        usage = dict(line.split() for line in Path(path).read_text().splitlines())
        return int(usage["usage_usec"]) / 1e6
    return 0.0


def idle_rate(seconds: float = 3.0) -> float:
    """Cores the machine keeps busy with nothing of ours running (others' work, noise)."""
    before, started = machine_cpu(), time.perf_counter()
    time.sleep(seconds)  # a measurement window, not a synchronisation
    return (machine_cpu() - before) / (time.perf_counter() - started)


# Where a whole run's CPU went, by who spent it. Processes that exit during the run count only
# through whoever reaps them: a container's shim (with its runc runs) and its FUSE mount are
# reparented to PID 1, so PID 1's reaped children are the engine's per-container processes
# (and any other orphan the machine reaps meanwhile: quiet machines only).
SPLIT = ("containers", "gateway", "dockerd + containerd", "shims, runc, FUSE (reaped)", "client")


def _own_and_reaped(pid: int) -> float:
    return _ticks(Path(f"/proc/{pid}/stat").read_text(), 11, 15)


def _reaped(pid: int) -> float:
    return _ticks(Path(f"/proc/{pid}/stat").read_text(), 13, 15)


def _pids(*comms: str) -> list[int]:
    found = []
    for path in Path("/proc").glob("[0-9]*/comm"):
        try:
            if path.read_text().strip() in comms:
                found.append(int(path.parent.name))
        except OSError:
            continue
    return found


def all_containers_cpu() -> float:
    """CPU seconds of every container since boot, removed ones included (cgroup v1 charges
    the parent ``docker`` group as it goes); 0 where that group is not there (cgroup v2)."""
    for path in ("/sys/fs/cgroup/cpuacct/docker/cpuacct.usage",
                 "/sys/fs/cgroup/cpu,cpuacct/docker/cpuacct.usage"):
        if os.path.exists(path):
            return int(Path(path).read_text()) / 1e9
    return 0.0


def split_snapshot(gateway_pid: int) -> dict[str, float]:
    """Cumulative CPU seconds of each of :data:`SPLIT`; subtract two for a run's share."""
    usage = os.times()
    return {"containers": all_containers_cpu(), "gateway": _own_and_reaped(gateway_pid),
            "dockerd + containerd": sum(_own_and_reaped(p) for p in _pids("dockerd", "containerd")),
            "shims, runc, FUSE (reaped)": _reaped(1), "client": usage.user + usage.system}
