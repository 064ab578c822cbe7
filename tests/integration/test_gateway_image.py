"""The gateway image, run as docs/images.md says: in a container, with the Docker socket and a
shared directory mounted at the same path inside and out, as a non-root user.

The image is not one of the default images (``"default": false``: no sandbox needs it, and
CI builds the defaults from bare), so this module brings it up to date itself: built when
missing or stale (a change of the gateway's code makes it stale), never rebuilding the base.
Then the SDK on the host claims a sandbox through the containerised gateway, runs ``1+1`` and
a seed plugin (both bind-mount directories the gateway made: the same-path rule at work),
and a ``docker stop`` leaves no sandbox or worker behind.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest

import sandcell
from sandcell_gateway.imagebuild import ensure_current, image_tag
from sandcell_gateway.testing import wait_for

pytestmark = pytest.mark.docker

SOCKET = "/var/run/docker.sock"
LABEL = "org.sandcell.test=gateway-image"  # the gateway containers this module starts

CONFIG = """
[gateway]
gateway_id = "{gateway_id}"

[templates.python]
min_ready = 1
max_total = 2

[plugins]
dir = "{shared}/plugins"
min_ready = 0
max_total = 1
"""


@pytest.fixture(scope="module")
def image() -> str:
    ensure_current(["gateway"], log=lambda line: None)
    return image_tag("gateway")


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def shared() -> Iterator[Path]:
    """The shared directory: short (sandbox sockets live in it, and ZMQ ipc paths are short)
    and owned by the gateway's uid."""
    path = Path(tempfile.mkdtemp(prefix="scgw-", dir="/tmp"))
    if os.getuid() == 0:
        os.chown(path, 1000, 1000)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def run_options(shared: Path, token: str) -> dict[str, Any]:
    """docs/images.md's ``docker run`` line, in docker-py's words (a free host port)."""
    return {
        "detach": True, "labels": dict([LABEL.split("=")]),
        # as root the image's own uid 1000; otherwise the caller's, who owns ``shared``
        "user": None if os.getuid() == 0 else f"{os.getuid()}:{os.getgid()}",
        "group_add": [str(os.stat(SOCKET).st_gid)],
        "volumes": {SOCKET: {"bind": SOCKET, "mode": "rw"}, str(shared): {"bind": str(shared)}},
        "environment": {"SANDCELL_SHARED_DIR": str(shared), "SANDCELL_TOKEN": token},
        "ports": {"8765/tcp": ("127.0.0.1", None)},
        "read_only": True, "tmpfs": {"/tmp": "size=64m"},
        "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"]}


def health(url: str, container: Any) -> dict[str, Any] | None:
    """The gateway's health once it answers; a container that exited fails at once."""
    container.reload()
    assert container.status in ("created", "running"), container.logs().decode()
    try:
        return dict(httpx.get(f"{url}/api/v1/health", timeout=5).json())
    except httpx.TransportError:
        return None


def owned(client: docker.DockerClient, gateway_id: str) -> list[str]:
    """The sandbox and worker containers of ``gateway_id``, running or not."""
    found = client.containers.list(all=True, filters={"label": f"org.sandcell.gateway={gateway_id}"})
    return [c.name for c in found]


@pytest.mark.timeout(900)  # a first build downloads the gateway's wheels (about a minute)
def test_the_gateway_image_serves_sandboxes_from_a_container(
        image: str, client: docker.DockerClient, shared: Path) -> None:
    gateway_id, token = f"sandcell-test-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    uid = 1000 if os.getuid() == 0 else os.getuid()  # the gateway's, so its sandboxes' too
    (shared / "gateway.toml").write_text(CONFIG.format(gateway_id=gateway_id, shared=shared))
    container = client.containers.run(image, **run_options(shared, token))
    try:
        container.reload()
        url = f"http://127.0.0.1:{container.ports['8765/tcp'][0]['HostPort']}"
        status = wait_for(lambda: health(url, container), timeout=120, what="the gateway")
        assert status["docker"]["reachable"] is True
        with sandcell.Client(base_url=url, token=token) as sdk:
            with sdk.sessions.create(template="python") as session:
                assert session.execute("1+1", timeout=60).results[0].text == "2"
                users = {client.containers.get(name).attrs["Config"]["User"]
                         for name in owned(client, gateway_id)}
                assert users == {f"{uid}:{uid}"}
            difference = sdk.plugins.invoke("subtract_numbers", operand1=10, operand2=4,
                                            timeout=60)
        assert difference["result"] == 6.0  # a seed plugin, copied out to the shared directory
        assert owned(client, gateway_id), "the gateway's pool should hold a sandbox"
        container.stop(timeout=60)
        assert container.wait(timeout=10)["StatusCode"] == 0, container.logs().decode()
        assert owned(client, gateway_id) == [], container.logs().decode()
    finally:
        container.remove(force=True)
    made = {p.name: p.stat() for p in shared.iterdir() if p.name != "gateway.toml"}
    assert set(made) == {"plugins", "run", "cache", "data", "home"}
    assert {s.st_uid for s in made.values()} == {uid}  # made by the gateway, as that uid
    assert stat.S_IMODE(made["run"].st_mode) == 0o700


def refusal(client: docker.DockerClient, image: str, **options: Any) -> bytes:
    """What the entrypoint says when it refuses to start (with exit status 2)."""
    with pytest.raises(docker.errors.ContainerError) as failed:
        client.containers.run(image, **{"labels": dict([LABEL.split("=")]), **options,
                                        "remove": True})
    assert failed.value.exit_status == 2
    return bytes(failed.value.stderr)


def test_the_image_refuses_to_start_without_the_shared_directory(
        image: str, client: docker.DockerClient) -> None:
    said = refusal(client, image, volumes={SOCKET: {"bind": SOCKET, "mode": "rw"}},
                   environment={"SANDCELL_SHARED_DIR": "/var/lib/sandcell"})
    assert b"-v /var/lib/sandcell:/var/lib/sandcell" in said


def test_the_image_refuses_a_shared_directory_from_another_host_path(
        image: str, client: docker.DockerClient, shared: Path) -> None:
    options = run_options(shared, "unused")
    options["volumes"] = {**options["volumes"], str(shared): {"bind": "/var/lib/sandcell"}}
    options["environment"] = {"SANDCELL_SHARED_DIR": "/var/lib/sandcell"}
    del options["detach"], options["ports"]
    said = refusal(client, image, **options)
    assert f"-v {shared}:{shared} -e SANDCELL_SHARED_DIR={shared}".encode() in said


def test_the_image_says_which_group_the_socket_needs(
        image: str, client: docker.DockerClient, shared: Path) -> None:
    options = run_options(shared, "unused")
    del options["detach"], options["ports"], options["group_add"]
    assert b"--group-add" in refusal(client, image, **options)
