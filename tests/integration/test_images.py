"""The sandbox images on real Docker, run exactly as the gateway runs them.

``ensure_images`` builds what is missing (a no-op when CI or a developer built them).
"""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from jupyter_client import BlockingKernelClient

from sandcell_gateway import imagebuild

pytestmark = pytest.mark.docker

IMAGE = "sandcell/python:latest"
KERNEL_TIMEOUT = 60.0


@pytest.fixture(scope="session")
def client() -> Iterator[docker.DockerClient]:
    imagebuild.ensure_images(["python"])
    docker_client = docker.from_env()
    yield docker_client
    docker_client.close()


def sandbox_user() -> tuple[int, int]:
    """uid 1000 as in production; a non-root host user must own the kernel's sockets."""
    if os.geteuid() in (0, 1000):
        return 1000, 1000
    return os.geteuid(), os.getegid()


def hardened(conn_dir: Path | None = None) -> dict[str, Any]:
    """docker-py arguments equal to the gateway's `docker run` flags."""
    uid, gid = sandbox_user()
    return dict(
        user=f"{uid}:{gid}",
        read_only=True,
        tmpfs={
            "/tmp": "size=256m",
            "/home/sandbox": f"size=512m,uid={uid},gid={gid},mode=0700",
        },
        network_mode="none",
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        pids_limit=256,
        mem_limit="1g",
        nano_cpus=1_000_000_000,
        volumes={str(conn_dir): {"bind": "/conn", "mode": "rw"}} if conn_dir else {},
    )


def run_sh(client: docker.DockerClient, script: str) -> str:
    """Run a shell script in a hardened sandbox (under the image's tini) and return stdout."""
    output = client.containers.run(IMAGE, ["sh", "-c", script], remove=True, **hardened())
    return output.decode()


# --- the hardened container ---------------------------------------------------------------


def test_sandbox_runs_as_uid_1000_with_a_read_only_root(client: docker.DockerClient) -> None:
    script = (
        "id -u; id -g; echo $HOME; pwd; "
        "touch /usr/probe 2>/dev/null && echo usr-writable || echo usr-read-only; "
        "touch $HOME/probe && echo home-writable; touch /tmp/probe && echo tmp-writable"
    )
    uid, gid = sandbox_user()
    lines = run_sh(client, script).split()
    expected = [str(uid), str(gid), "/home/sandbox", "/home/sandbox", "usr-read-only"]
    assert lines == expected + ["home-writable", "tmp-writable"]


def test_tini_is_pid_1(client: docker.DockerClient) -> None:
    assert run_sh(client, "cat /proc/1/comm").strip() == "tini"


def test_python_packages_import_from_the_venv(client: docker.DockerClient) -> None:
    code = (
        "import sys, ipykernel, numpy, pandas, matplotlib as mpl; "
        "print(sys.executable); "
        "print(ipykernel.__version__, numpy.__version__, pandas.__version__, mpl.__version__)"
    )
    executable, versions = run_sh(client, f"python -c '{code}'").splitlines()
    assert executable == "/opt/sandcell/bin/python"
    assert versions.split() == pinned_versions("ipykernel", "numpy", "pandas", "matplotlib")


def pinned_versions(*names: str) -> list[str]:
    requirements = imagebuild.load_recipes()["python"].requirements
    assert requirements is not None
    pins = dict(re.findall(r"^([\w.-]+)==(\S+)", requirements.read_text(), re.MULTILINE))
    return [pins[name] for name in names]


def test_image_config_matches_the_gateway_contract(client: docker.DockerClient) -> None:
    config = client.images.get(IMAGE).attrs["Config"]
    assert config["User"] == "1000:1000"
    assert config["WorkingDir"] == "/home/sandbox"
    assert config["Entrypoint"] == ["/usr/bin/tini", "--"]
    assert config["Cmd"] == ["/usr/local/bin/sandcell-kernel"]
    assert "HOME=/home/sandbox" in config["Env"]
    assert any(env.startswith("PATH=/opt/sandcell/bin:") for env in config["Env"])
    assert re.fullmatch(r"[0-9a-f]{64}", config["Labels"][imagebuild.RECIPE_LABEL])


# --- the kernel, over ipc sockets in a bind-mounted directory ---------------------------


def connection_dir(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A kernel.json like the gateway's: ipc transport, sockets in the shared directory."""
    conn = tmp_path / "conn"
    conn.mkdir(mode=0o700)
    info = {
        "transport": "ipc",
        "ip": "/conn/k",
        "shell_port": 1,
        "iopub_port": 2,
        "stdin_port": 3,
        "control_port": 4,
        "hb_port": 5,
        "key": secrets.token_hex(32),
        "signature_scheme": "hmac-sha256",
    }
    (conn / "kernel.json").write_text(json.dumps(info))
    (conn / "kernel.json").chmod(0o600)
    for path in (conn, conn / "kernel.json"):
        os.chown(path, *sandbox_user())
    return conn, info


@pytest.fixture
def kernel(client: docker.DockerClient, tmp_path: Path) -> Iterator[BlockingKernelClient]:
    """A sandbox started with the image's own CMD, and a host client connected to it."""
    conn, info = connection_dir(tmp_path)
    container = client.containers.run(IMAGE, detach=True, **hardened(conn))
    kernel_client = BlockingKernelClient()
    kernel_client.load_connection_info({**info, "ip": str(conn / "k")})
    kernel_client.start_channels()
    try:
        wait_until_ready(kernel_client, container)
        yield kernel_client
    finally:
        kernel_client.stop_channels()
        container.remove(force=True)


def wait_until_ready(kernel_client: BlockingKernelClient, container: Any) -> None:
    """Ready = a kernel_info reply on shell AND its status on IOPub (else output is lost).

    Not ``wait_for_ready``: its 1-second heartbeat deadline declares a kernel that is
    still starting on a busy 2-core machine dead.
    """
    deadline = time.monotonic() + KERNEL_TIMEOUT
    while time.monotonic() < deadline:
        msg_id = kernel_client.kernel_info()
        if got_reply(kernel_client, msg_id) and iopub_saw(kernel_client, msg_id):
            return
        container.reload()
        assert container.status == "running", container.logs().decode()
    raise AssertionError(f"kernel not ready in {KERNEL_TIMEOUT}s:\n{container.logs().decode()}")


def got_reply(kernel_client: BlockingKernelClient, msg_id: str) -> bool:
    """Drain shell replies, waiting up to a second per message, for the one to ``msg_id``."""
    try:
        while True:
            if kernel_client.get_shell_msg(timeout=1)["parent_header"].get("msg_id") == msg_id:
                return True
    except queue.Empty:
        return False


def iopub_saw(kernel_client: BlockingKernelClient, msg_id: str) -> bool:
    """Drain IOPub, waiting up to a second per message, for one caused by ``msg_id``."""
    try:
        while True:
            if kernel_client.get_iopub_msg(timeout=1)["parent_header"].get("msg_id") == msg_id:
                return True
    except queue.Empty:
        return False


def execute(kernel_client: BlockingKernelClient, code: str) -> list[dict[str, Any]]:
    """The IOPub messages of one execution, up to its idle status."""
    msg_id = kernel_client.execute(code)
    messages = []
    while True:
        message = kernel_client.get_iopub_msg(timeout=KERNEL_TIMEOUT)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append(message)
        if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            return messages


def test_kernel_answers_kernel_info(kernel: BlockingKernelClient) -> None:
    kernel.kernel_info()
    reply = kernel.get_shell_msg(timeout=KERNEL_TIMEOUT)
    assert reply["content"]["status"] == "ok"
    assert reply["content"]["language_info"]["name"] == "python"


def test_first_plot_is_a_png_without_warnings(kernel: BlockingKernelClient) -> None:
    code = "import numpy, pandas\nimport matplotlib.pyplot as plt\nplt.plot([1, 2]); plt.show()"
    messages = execute(kernel, code)
    kinds = [message["msg_type"] for message in messages]
    streams = [m["content"] for m in messages if m["msg_type"] == "stream"]
    assert streams == [], "matplotlib or the kernel wrote to stdout/stderr (font cache?)"
    assert "error" not in kinds
    displays = [m["content"]["data"] for m in messages if m["msg_type"] == "display_data"]
    assert len(displays) == 1 and "image/png" in displays[0]


def test_kernel_sees_the_hardened_environment(kernel: BlockingKernelClient) -> None:
    code = (
        "import os, socket; print(os.getuid(), os.environ['HOME'], "
        "sorted(name for _, name in socket.if_nameindex()))"
    )
    messages = execute(kernel, code)
    text = "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")
    assert text.split(" ", 2)[:2] == [str(sandbox_user()[0]), "/home/sandbox"]
    assert text.rstrip().endswith("['lo']")


# --- incremental rebuilds ------------------------------------------------------------------


def image_ids(client: docker.DockerClient) -> dict[str, str]:
    return {tag: client.images.get(tag).id for tag in (IMAGE, "sandcell/base:bookworm")}


def test_second_build_is_a_no_op(client: docker.DockerClient) -> None:
    builder = imagebuild.ImageBuilder(client, imagebuild.load_recipes(), log=lambda line: None)
    builder.build(["python"])  # brings a stale image up to date; usually a no-op already
    before = image_ids(client)
    assert imagebuild.main(["build", "python"]) == 0
    assert image_ids(client) == before
    again = imagebuild.ImageBuilder(client, imagebuild.load_recipes(), log=lambda line: None)
    results = again.build(["python"])
    assert [(result.name, result.status) for result in results] == [
        ("base", "up to date"),
        ("python", "up to date"),
    ]


def test_list_reports_current_images(
    client: docker.DockerClient, capsys: pytest.CaptureFixture[str]
) -> None:
    assert imagebuild.main(["list"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[0][:3] == ["NAME", "TAG", "STATE"]
    states = {row[0]: row[2] for row in rows[1:]}
    assert states["base"] == states["python"] == "current"
