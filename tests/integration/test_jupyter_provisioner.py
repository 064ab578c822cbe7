"""Every Jupyter client runs on Sandcell by kernel name: the ``sandcell`` provisioner (issue 18).

Kernelspecs are installed into a temp prefix found through ``JUPYTER_PATH``; the gateway is
found through ``SANDCELL_URL``/``SANDCELL_TOKEN``, as ``sandcell.Client()`` finds it. The
entry point must be registered (``pip install -e '.[dev]'``, as ``make test`` does).
"""

from __future__ import annotations

import json
import os
import re
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
import pexpect
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
        # JEP 65, as ipykernel: a new subscriber is welcomed, so it knows IOPub is up
        assert kc.get_iopub_msg(timeout=10)["msg_type"] == "iopub_welcome"
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


# Loaded by pytest from the notebooks' folder: writes what each notebook's cells printed, so
# the test can check the proof (nbval itself compares only cells that have stored outputs).
NBVAL_CONFTEST = """
import json, os
def pytest_runtest_teardown(item):
    outputs = getattr(item, "test_outputs", None)
    if outputs is not None:
        with open(os.environ["NBVAL_OUTPUTS"], "a") as f:
            f.write(json.dumps([item.nodeid, [o.get("text", "") for o in outputs]]) + "\\n")
"""


def nbval_folder(folder: Path, stored: dict[str, str]) -> Path:
    """One notebook per name: the proof (run, not compared), a marker no earlier notebook's
    sandbox may have left, and ``print(6*7)`` whose stored output nbval must compare."""
    folder.mkdir()
    (folder / "conftest.py").write_text(NBVAL_CONFTEST)
    for name, expected in stored.items():
        fresh = "import pathlib; m = pathlib.Path('/tmp/seen'); print(m.exists()); m.touch()"
        path = proof_notebook(folder / f"{name}.ipynb", fresh, "print(6*7)")
        nb = nbformat.read(path, as_version=4)
        for cell, text in zip(nb.cells[1:], ("False\n", expected)):
            cell.execution_count = 1
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        nbformat.write(nb, path)
    return folder


def run_nbval(folder: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], list[Any]]:
    outputs = folder / "outputs.jsonl"
    done = run("-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", "--nbval",
               "--nbval-kernel-name", KERNEL, *extra, str(folder), cwd=folder,
               env={**os.environ, "NBVAL_OUTPUTS": str(outputs)})
    lines = outputs.read_text().splitlines() if outputs.exists() else []
    return done, [json.loads(line) for line in lines]


def test_nbval_runs_each_notebook_in_a_fresh_sandbox(kernelspecs: Path, gateway: Gateway,
                                                     tmp_path: Path) -> None:
    before = set(sandboxes(gateway))
    folder = nbval_folder(tmp_path / "notebooks", {"first": "42\n", "second": "42\n"})
    done, outputs = run_nbval(folder)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 passed" in done.stdout, done.stdout
    proofs = [texts[0] for nodeid, texts in outputs if nodeid.endswith("::Cell 0")]
    assert len(proofs) == 2
    for proof in proofs:
        assert_sandboxed(proof)
    assert len({proof.split()[-1] for proof in proofs}) == 2  # two sandboxes, two hostnames
    wait_for(lambda: set(sandboxes(gateway)) <= before or None, 30, "the sandboxes deleted")


def test_nbval_reports_an_output_mismatch_as_a_failure(kernelspecs: Path, tmp_path: Path) -> None:
    folder = nbval_folder(tmp_path / "notebooks", {"wrong": "43\n"})
    done, _ = run_nbval(folder)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 2 passed" in done.stdout and "Cell outputs differ" in done.stdout, done.stdout
    assert "43" in done.stdout and "42" in done.stdout


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


def test_a_pool_at_its_cap_fails_at_start_kernel_without_hanging(kernelspecs: Path,
                                                                 gateway: Gateway) -> None:
    first = hold_the_tiny_pool(gateway)
    try:
        with pytest.raises(RuntimeError, match="max_total"):
            KernelManager(kernel_name="sandcell-tiny").start_kernel()
    finally:
        first.shutdown_kernel(now=True)


BAD_STARTS = {  # what is wrong: (environment, kernel name, what the error must say to fix)
    "no gateway": ({"SANDCELL_URL": "http://127.0.0.1:9"}, KERNEL, "sandcell serve"),
    "bad token": ({"SANDCELL_TOKEN": "wrong"}, KERNEL, "Set SANDCELL_TOKEN"),
    "unknown template": ({}, "sandcell-nosuch", "no template 'nosuch'"),
    "pool at its cap": ({}, "sandcell-tiny", "raise the template's max_total"),
}
CLIENTS = {
    "nbval": lambda nb, kernel: ("-m", "pytest", "-p", "no:cacheprovider", "--nbval",
                                 "--nbval-kernel-name", kernel, str(nb)),
    "papermill": lambda nb, kernel: ("-m", "papermill", str(nb), str(nb.with_suffix(".out.ipynb")),
                                     "-k", kernel),
}


@pytest.mark.parametrize("client", sorted(CLIENTS))
@pytest.mark.parametrize("bad", sorted(BAD_STARTS))
def test_a_bad_start_says_what_to_fix_in_the_clients_terminal(kernelspecs: Path, gateway: Gateway,
                                                              tmp_path: Path, client: str,
                                                              bad: str) -> None:
    setting, kernel, fix = BAD_STARTS[bad]
    nb = proof_notebook(tmp_path / "bad.ipynb")
    run("-m", "sandcell.jupyter", "kernelspec", "install", "--prefix", str(kernelspecs),
        "--template", "nosuch")
    holder = hold_the_tiny_pool(gateway) if bad == "pool at its cap" else None
    try:  # the timeout is the "never a hang": a claim waits claim_timeout (2 s for tiny) at most
        done = run(*CLIENTS[client](nb, kernel), timeout=120, cwd=tmp_path,
                   env={**os.environ, **setting})
    finally:
        if holder is not None:
            holder.shutdown_kernel(now=True)
    terminal = done.stdout + done.stderr
    # both clients would succeed on a local kernel: a failure means nothing fell back to one
    assert done.returncode != 0, terminal
    assert "KernelStartError: cannot start kernel" in terminal and fix in terminal, terminal


def hold_the_tiny_pool(gateway: Gateway) -> KernelManager:
    """The tiny pool's one sandbox (max_total 1, claim_timeout 2), claimed once it is warm."""
    gateway.wait_ready("tiny")
    holder = KernelManager(kernel_name="sandcell-tiny")
    holder.start_kernel()
    return holder


ANSI = r"(?:\x1b\[[0-9;?]*[A-Za-z])*"  # prompt_toolkit styles every character it draws


def on_screen(text: str) -> str:
    """A regex for ``text`` as a terminal draws it, escape sequences between any two characters."""
    return ANSI.join(re.escape(c) for c in text)


def test_jupyter_console_completes_interrupts_and_exits_clean(kernelspecs: Path, gateway: Gateway) -> None:
    before = set(sandboxes(gateway))
    console = pexpect.spawn(sys.executable, ["-m", "jupyter_console", "--kernel", KERNEL],
                            env={**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm"},
                            encoding="utf-8", timeout=60, dimensions=(40, 200))
    try:
        console.expect(on_screen("In [1]: "))
        assert len(set(sandboxes(gateway)) - before) == 1
        console.sendline("6*7")
        console.expect(on_screen("Out[1]: 42"))
        console.send("import collections; collections.OrderedD\t")
        console.expect(on_screen("ict"))  # completed from the kernel's complete_reply
        console.sendline("")
        console.expect(on_screen("Out[2]: collections.OrderedDict"))
        console.sendline("import time; print('sleep' + 'ing', flush=True); time.sleep(60)")
        console.expect("sleeping")  # in the user's code: an earlier SIGINT would be swallowed
        console.sendintr()  # Ctrl-C: the console interrupts through the provisioner
        console.expect(on_screen("KeyboardInterrupt"), timeout=30)
        console.expect(on_screen("In [4]: "))
        console.sendline("exit")
        console.expect(pexpect.EOF)
    finally:
        console.close(force=True)
    assert console.exitstatus == 0, console.before
    wait_for(lambda: set(sandboxes(gateway)) <= before or None, 30, "the console's sandbox deleted")
