"""``python -m bench.provisioner_steps``: where a ``sandcell`` provisioner start spends its time.

The ``start_kernel to first 1+1`` run of ``bench.provisioner`` (IOPub welcome variant), with
``time.perf_counter`` around each step: jupyter_client's ``pre_start``/``launch``/``post_start``
and, on the bridge thread, the claim (``POST /api/kernels``) and the channels WebSocket; and
the CPU time of the client process, of its main thread and of the bridge thread (CPU time is
what a loaded machine does not stretch: compare it across runs, and wall times within one).
Each step is wrapped by patching it here, for this process only.

    python -m bench.provisioner_steps --runs 10 [--max-total 2]

``--max-total 2`` keeps the pool from refilling during the timed run (2 ready, 1 claimed: at
the cap), to see what the refill's container start costs the run it overlaps.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager
from sandcell.jupyter import _gateway, _remote

from .provisioner import CONFIG, sandcell_kernelspecs, welcomed

TIMES: dict[str, list[float]] = defaultdict(list)
PATCHED = [  # (owner, attribute, label)
    (KernelManager, "_async_pre_start_kernel", "km.pre_start"),
    (KernelManager, "_async_launch_kernel", "km.launch (provisioner.launch_kernel)"),
    (KernelManager, "_async_post_start_kernel", "km.post_start"),
    (_remote.RemoteKernel, "start", "  bridge thread: RemoteKernel.start"),
    (_remote, "ChannelBridge", "    bind the 5 local sockets"),
    (_gateway.GatewayKernels, "claim", "    claim (POST /api/kernels)"),
    (_remote, "open_channels", "  channels WebSocket (after start returns)"),
]


def timed(fn: Callable[..., Any], label: str) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                TIMES[label].append(time.perf_counter() - start)
        return wrapper

    @functools.wraps(fn)
    def plain(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMES[label].append(time.perf_counter() - start)
    return plain


def bridge_clock() -> int | None:
    thread = next((t for t in threading.enumerate() if t.name == "sandcell-bridge"), None)
    return None if thread is None or thread.ident is None else time.pthread_getcpuclockid(thread.ident)


def one_start(kernel_name: str) -> None:
    clock = bridge_clock()
    bridge0 = time.clock_gettime(clock) if clock is not None else 0.0
    km = KernelManager(kernel_name=kernel_name)
    cpu0, main0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
    km.start_kernel()
    t1 = time.perf_counter()
    kc = km.client()
    kc.start_channels()
    t2 = time.perf_counter()
    welcomed(kc)
    t3 = time.perf_counter()
    results: list[Any] = []
    kc.execute_interactive("1+1", timeout=60, output_hook=lambda m: results.append(m)
                           if m["msg_type"] == "execute_result" else None)
    t4 = time.perf_counter()
    for label, value in [("start_kernel()", t1 - t0), ("client() + start_channels()", t2 - t1),
                         ("IOPub welcome", t3 - t2), ("first 1+1", t4 - t3), ("TOTAL", t4 - t0),
                         ("CPU: client process", time.process_time() - cpu0),
                         ("CPU: main thread", time.thread_time() - main0)]:
        TIMES[label].append(value)
    if clock is not None:
        TIMES["CPU: bridge thread"].append(time.clock_gettime(clock) - bridge0)
    kc.execute_interactive("2+2", timeout=60, output_hook=lambda m: None)
    TIMES["second 1+1 (not in TOTAL)"].append(time.perf_counter() - t4)
    assert len(results) == 1, results
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def run(runs: int, config: str) -> None:
    for owner, name, label in PATCHED:
        setattr(owner, name, timed(getattr(owner, name), label))
    with tempfile.TemporaryDirectory() as workdir:
        tmp = Path(workdir)
        (tmp / "gw").mkdir()
        with sandcell_kernelspecs(tmp, config) as gw:
            one_start("sandcell-python")  # warm-up: the bridge thread and reaper start once
            TIMES.clear()
            for _ in range(runs):
                gw.wait_ready()
                one_start("sandcell-python")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.provisioner_steps", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--max-total", type=int, default=8, help="the python pool's max_total")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    run(args.runs, CONFIG.replace("max_total = 8", f"max_total = {args.max_total}"))
    print(f"load average after: {os.getloadavg()}")
    print("| step | median | min | max |\n|---|---:|---:|---:|")
    for label, values in TIMES.items():
        ms = sorted(v * 1000 for v in values)
        print(f"| {label} | {statistics.median(ms):.1f} ms | {ms[0]:.1f} ms | {ms[-1]:.1f} ms |")


if __name__ == "__main__":
    main()
