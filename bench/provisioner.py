"""``python -m bench.provisioner``: Jupyter clients by kernel name, on Sandcell vs local kernels.

Two scenarios (issue 18):

- **start_kernel to first 1+1**: ``KernelManager(kernel_name=...)``, then from
  ``start_kernel()`` through ``client().start_channels()``, a wait until the client may
  execute, and ``execute_interactive("1+1")`` until the result is held. The wait is either
  ``wait_for_ready()`` (as nbclient and nbval do before their first cell; jupyter_client ends
  it by draining IOPub until 0.2 s pass without a message, so it costs 200 ms on any kernel)
  or the kernel's ``iopub_welcome`` (JEP 65). ``sandcell-python`` (the ``sandcell``
  provisioner, a warm claim; the pool refills between runs, outside the timing) vs
  ``python3`` (a local ipykernel started the usual way).
- **nbval, 20 notebooks**: ``pytest --nbval --nbval-kernel-name K`` on a folder of 20 small
  notebooks (a cell printing uid/hostname and ``1+1`` with its stored output), wall time of
  the whole pytest process, each notebook in its own kernel.

The kernelspecs go into a temp prefix found through ``JUPYTER_PATH``; the entry point must be
registered (``pip install -e '.[dev]'``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.manager import KernelManager

from sandcell_gateway.imagebuild import ensure_images
from sandcell_gateway.testing import GatewayProcess

from .stats import Sample, table

START = "start_kernel to first 1+1, wait_for_ready"
START_DIRECT = "start_kernel to first 1+1, IOPub welcome"
NBVAL = "nbval, 20 notebooks (wall)"
SANDCELL, LOCAL = "sandcell-python (provisioner)", "python3 (local ipykernel)"
CONFIG = """
[gateway]
gateway_id = "{gateway_id}"

[templates.python]
min_ready = 2
max_total = 8

[plugins]
enabled = false
"""
CELL = "import os, socket\nprint(os.getuid(), socket.gethostname() != '')"


def first_result(kernel_name: str, wait_for_ready: bool = True) -> float:
    km = KernelManager(kernel_name=kernel_name)
    start = time.perf_counter()
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        if wait_for_ready:
            kc.wait_for_ready(timeout=60)
        else:
            welcomed(kc)
        results: list[str] = []
        kc.execute_interactive("1+1", timeout=60, output_hook=lambda m: results.append(
            m["content"]["data"]["text/plain"]) if m["msg_type"] == "execute_result" else None)
        elapsed = time.perf_counter() - start
        assert results == ["2"], results
        return elapsed
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def welcomed(kc: Any) -> None:
    """IOPub is up once the kernel's ``iopub_welcome`` (JEP 65) arrived (ipykernel >= 7 sends
    it; so does the Sandcell bridge): then no output of the first cell can be missed."""
    while kc.get_iopub_msg(timeout=60)["msg_type"] != "iopub_welcome":
        pass


def write_notebooks(folder: Path, count: int = 20) -> Path:
    folder.mkdir(parents=True)
    for i in range(count):
        proof, add = nbformat.v4.new_code_cell(CELL), nbformat.v4.new_code_cell("1+1")
        add.execution_count = 1
        add.outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"},
                                              execution_count=1)]
        nbformat.write(nbformat.v4.new_notebook(cells=[proof, add]), folder / f"nb{i:02d}.ipynb")
    return folder


def nbval_wall(folder: Path, kernel_name: str) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--nbval", "--nbval-kernel-name", kernel_name, str(folder)],
                          capture_output=True, text=True, timeout=900, cwd=folder)
    elapsed = time.perf_counter() - start
    assert done.returncode == 0, done.stdout + done.stderr
    return elapsed


@contextmanager
def sandcell_kernelspecs(tmp: Path, config: str = CONFIG) -> Iterator[GatewayProcess]:
    """A gateway, with ``sandcell-python`` installed where jupyter_client finds it."""
    with GatewayProcess(tmp / "gw", config) as gw:
        os.environ.update(SANDCELL_URL=gw.url, SANDCELL_TOKEN=gw.token,
                          JUPYTER_PATH=str(tmp / "share" / "jupyter"))
        subprocess.run([sys.executable, "-m", "sandcell.jupyter", "kernelspec", "install",
                        "--prefix", str(tmp), "--template", "python"], check=True,
                       capture_output=True)
        gw.wait_ready()
        yield gw


def run(runs: int, nbval_runs: int) -> list[Sample]:
    with tempfile.TemporaryDirectory() as workdir:
        tmp = Path(workdir)
        (tmp / "gw").mkdir()
        folder = write_notebooks(tmp / "notebooks")
        local = [first_result("python3") for _ in range(runs)]
        local_direct = [first_result("python3", wait_for_ready=False) for _ in range(runs)]
        local_nbval = [nbval_wall(folder, "python3") for _ in range(nbval_runs)]
        with sandcell_kernelspecs(tmp) as gw:
            first_result("sandcell-python")  # warm-up: the bridge thread and reaper start once
            remote, remote_direct = [], []
            for _ in range(runs):
                gw.wait_ready()
                remote.append(first_result("sandcell-python"))
                gw.wait_ready()
                remote_direct.append(first_result("sandcell-python", wait_for_ready=False))
            remote_nbval = []
            for _ in range(nbval_runs):
                gw.wait_ready()
                remote_nbval.append(nbval_wall(folder, "sandcell-python"))
    return [Sample(START, LOCAL, local), Sample(START, SANDCELL, remote),
            Sample(START_DIRECT, LOCAL, local_direct), Sample(START_DIRECT, SANDCELL, remote_direct),
            Sample(NBVAL, LOCAL, local_nbval), Sample(NBVAL, SANDCELL, remote_nbval)]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.provisioner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="start_kernel runs per system")
    parser.add_argument("--nbval-runs", type=int, default=3, help="nbval runs per system")
    args = parser.parse_args()
    ensure_images(["python"])
    print(f"load average before: {os.getloadavg()}")
    samples = run(args.runs, args.nbval_runs)
    print(f"load average after: {os.getloadavg()}")
    print(table(samples, {START: LOCAL, START_DIRECT: LOCAL, NBVAL: LOCAL}))


if __name__ == "__main__":
    main()
