"""Every Jupyter client runs on Sandcell by kernel name: the ``sandcell`` provisioner (issue 18).

Kernelspecs are installed into a temp prefix found through ``JUPYTER_PATH``; the gateway is
found through ``SANDCELL_URL``/``SANDCELL_TOKEN``, as ``sandcell.Client()`` finds it. The
entry point must be registered (``pip install -e '.[dev]'``, as ``make test`` does).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import KernelManager

from .conftest import Gateway, wait_for

pytestmark = pytest.mark.docker
KERNEL = "sandcell-python"
PROOF = textwrap.dedent("""\
    import os, socket
    print(os.getuid(), sorted(name for _, name in socket.if_nameindex()), socket.gethostname())
""")


def run(*argv: str, timeout: float = 240, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=timeout,
                          **kwargs)


@pytest.fixture
def kernelspecs(gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    registered = entry_points(group="jupyter_client.kernel_provisioners", name="sandcell")
    assert registered, "the 'sandcell' provisioner is not registered: pip install -e '.[dev]'"
    monkeypatch.setenv("SANDCELL_URL", gateway.url)
    monkeypatch.setenv("SANDCELL_TOKEN", gateway.token)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    done = run("-m", "sandcell.jupyter", "kernelspec", "install", "--prefix", str(tmp_path))
    assert done.returncode == 0, done.stderr
    return tmp_path


def proof_notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in (PROOF, *cells)])
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3 (Sandcell)",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


def assert_sandboxed(stdout: str) -> None:
    uid, rest = stdout.strip().split(" ", 1)
    interfaces, hostname = rest.rsplit(" ", 1)
    assert uid == "1000" and interfaces == "['lo']" and hostname != socket.gethostname()


def sandboxes(gateway: Gateway) -> list[str]:
    with gateway.http() as http:
        return [k["id"] for k in http.get("/api/kernels").json()]


def test_kernelspec_install_writes_one_spec_per_template(kernelspecs: Path) -> None:
    listed = json.loads(run("-m", "jupyter_client.kernelspecapp", "list", "--json").stdout)
    specs = listed["kernelspecs"]
    assert {"sandcell-python", "sandcell-tiny"} <= set(specs)
    spec = specs["sandcell-python"]["spec"]
    assert spec["metadata"]["kernel_provisioner"] == {"provisioner_name": "sandcell",
                                                      "config": {"template": "python"}}
    assert spec["language"] == "python" and "Sandcell" in spec["display_name"]
    assert Path(specs["sandcell-tiny"]["resource_dir"]).is_relative_to(kernelspecs)


def test_kernel_manager_runs_in_a_sandbox_and_leaves_nothing(kernelspecs: Path, gateway: Gateway) -> None:
    before = set(sandboxes(gateway))
    km = KernelManager(kernel_name=KERNEL)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        outputs: list[str] = []
        reply = kc.execute_interactive(PROOF, timeout=30, output_hook=lambda m: outputs.append(
            m["content"].get("text", "")))
        assert reply["content"]["status"] == "ok"
        assert_sandboxed("".join(outputs))
        assert km.is_alive() and len(set(sandboxes(gateway)) - before) == 1
        first = set(sandboxes(gateway)) - before
        km.restart_kernel()  # a fresh warm sandbox behind the same ports
        wait_for(lambda: (set(sandboxes(gateway)) - before - first) or None, 30, "a new sandbox")
        assert not (first & set(sandboxes(gateway)))
        assert kc.execute_interactive("x = 6*7; x", timeout=30)["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
        km.shutdown_kernel()
    assert not km.is_alive()
    wait_for(lambda: set(sandboxes(gateway)) <= before or None, 30, "the sandboxes deleted")


def test_a_deleted_sandbox_is_a_dead_kernel(kernelspecs: Path, gateway: Gateway) -> None:
    before = set(sandboxes(gateway))
    km = KernelManager(kernel_name=KERNEL)
    km.start_kernel()
    try:
        (kernel_id,) = set(sandboxes(gateway)) - before
        with gateway.http() as http:
            assert http.delete(f"/api/kernels/{kernel_id}").status_code == 204
        wait_for(lambda: not km.is_alive() or None, 30, "the kernel to be dead")
    finally:
        km.shutdown_kernel(now=True)


def test_interrupt_maps_to_the_gateway(kernelspecs: Path) -> None:
    km = KernelManager(kernel_name=KERNEL)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        msg_id = kc.execute("import time; print('sleeping', flush=True); time.sleep(60)")
        # inside the user's code: a SIGINT between "busy" and the code itself is swallowed by
        # ipykernel (seen under load: the cell then slept its full 60 s)
        wait_for(lambda: _printed(kc, "sleeping"), 30, "the cell to start")
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=20)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["ename"] == "KeyboardInterrupt"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _printed(kc: Any, text: str) -> bool | None:
    msg = kc.get_iopub_msg(timeout=10)
    return (msg["msg_type"] == "stream" and text in msg["content"]["text"]) or None


CRASHING_CLIENT = """
import os, sys
from jupyter_client.manager import KernelManager
km = KernelManager(kernel_name="sandcell-python"); km.start_kernel()
print(km.provisioner._remote.kernel_id, flush=True)
sys.stdin.readline()
os.kill(os.getpid(), 9)
"""


def test_no_sandbox_outlives_a_crashed_client(kernelspecs: Path, gateway: Gateway) -> None:
    with subprocess.Popen([sys.executable, "-c", CRASHING_CLIENT], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as client:
        assert client.stdout is not None and client.stdin is not None
        kernel_id = client.stdout.readline().strip()
        assert kernel_id in sandboxes(gateway)
        client.stdin.write("\n")
        client.stdin.flush()
        assert client.wait(timeout=30) == -signal.SIGKILL
    wait_for(lambda: kernel_id not in sandboxes(gateway) or None, 30, "the reaper's delete")


def test_nbclient_by_kernel_name(kernelspecs: Path, tmp_path: Path) -> None:
    from nbclient import NotebookClient

    nb = nbformat.read(proof_notebook(tmp_path / "nb.ipynb"), as_version=4)
    NotebookClient(nb, kernel_name=KERNEL, timeout=60).execute()
    assert_sandboxed(nb.cells[0].outputs[0]["text"])


def test_nbconvert_execute(kernelspecs: Path, tmp_path: Path) -> None:
    path = proof_notebook(tmp_path / "conv.ipynb")
    done = run("-m", "nbconvert", "--to", "notebook", "--execute", "--output", "out.ipynb",
               f"--ExecutePreprocessor.kernel_name={KERNEL}", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert_sandboxed(nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0].outputs[0]["text"])


def test_papermill_with_a_parameter(kernelspecs: Path, tmp_path: Path) -> None:
    path = proof_notebook(tmp_path / "pm.ipynb", "n = 1", "print(n * 2)")
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].metadata["tags"] = ["parameters"]
    nbformat.write(nb, path)
    done = run("-m", "papermill", str(path), str(tmp_path / "pm-out.ipynb"), "-k", KERNEL,
               "-p", "n", "10")
    assert done.returncode == 0, done.stderr
    out = nbformat.read(tmp_path / "pm-out.ipynb", as_version=4)
    assert_sandboxed(out.cells[0].outputs[0]["text"])
    assert out.cells[-1].outputs[0]["text"] == "20\n"


@pytest.mark.parametrize("setting, expected", [
    ({"SANDCELL_URL": "http://127.0.0.1:9"}, "sandcell serve"),
    ({"SANDCELL_TOKEN": "wrong"}, "SANDCELL_TOKEN"),
])
def test_a_bad_gateway_or_token_fails_at_start_kernel(kernelspecs: Path, monkeypatch: pytest.MonkeyPatch,
                                                      setting: dict[str, str], expected: str) -> None:
    for name, value in setting.items():
        monkeypatch.setenv(name, value)
    km = KernelManager(kernel_name=KERNEL)
    with pytest.raises(RuntimeError, match=expected):
        km.start_kernel()


def test_an_unknown_template_fails_at_start_kernel(kernelspecs: Path) -> None:
    done = run("-m", "sandcell.jupyter", "kernelspec", "install", "--prefix", str(kernelspecs),
               "--template", "nosuch")
    assert done.returncode == 0, done.stderr
    with pytest.raises(RuntimeError, match=r"no template 'nosuch'.*sandcell kernelspec install"):
        KernelManager(kernel_name="sandcell-nosuch").start_kernel()


def test_a_pool_at_its_cap_fails_at_start_kernel_without_hanging(kernelspecs: Path) -> None:
    first = KernelManager(kernel_name="sandcell-tiny")
    first.start_kernel()  # tiny: max_total 1, claim_timeout 2
    try:
        with pytest.raises(RuntimeError, match="max_total"):
            KernelManager(kernel_name="sandcell-tiny").start_kernel()
    finally:
        first.shutdown_kernel(now=True)


def test_papermill_reports_a_start_error_in_its_terminal(kernelspecs: Path, tmp_path: Path) -> None:
    path = proof_notebook(tmp_path / "bad.ipynb")
    done = run("-m", "papermill", str(path), str(tmp_path / "o.ipynb"), "-k", KERNEL,
               env={**os.environ, "SANDCELL_TOKEN": "wrong"})
    assert done.returncode != 0 and "SANDCELL_TOKEN" in done.stderr
