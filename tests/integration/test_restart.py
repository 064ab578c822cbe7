"""A gateway killed with SIGKILL comes back with its sandboxes; a Docker outage is a 503.

Each test runs its own gateways (real subprocess, real Docker): restarting the same
:class:`GatewayProcess` reuses its gateway id, state dir, token and store, as an operator's
restart of a crashed gateway would. Recovery times are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest

from sandcell_gateway.imagebuild import ensure_images
from sandcell_gateway.wire import kernel_id_of
from sandcell_gateway.testing import GatewayProcess, SocketProxy, wait_for

from .test_jupyter_api import run as ws_run
from .test_jupyter_api import websocket, ws_url

pytestmark = pytest.mark.docker

CONFIG = """
[gateway]
gateway_id = "{gateway_id}"
sandbox_ttl = 600
claim_timeout = 20
{extra}

[templates.python]
min_ready = 1
max_total = 4

[plugins]
enabled = false
"""
IMAGE = "sandcell/python:latest"


@pytest.fixture(scope="module", autouse=True)
def images() -> None:
    ensure_images(["python"])


@pytest.fixture
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    """A gateway the test starts (and may kill and restart); no container may outlive it."""
    gw = GatewayProcess(tmp_path, CONFIG.replace("{extra}", ""))
    try:
        yield gw
    finally:
        if gw.process is not None:
            gw.stop()
            assert gw.containers() == [], f"containers left behind\n{gw.log()[-3000:]}"


def create(http: httpx.Client, **body: Any) -> str:
    response = http.post("/api/v1/sandboxes", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def run(http: httpx.Client, sandbox_id: str, code: str) -> list[dict[str, Any]]:
    response = http.post(f"/api/v1/sandboxes/{sandbox_id}/execute", json={"code": code})
    assert response.status_code == 200, response.text
    return [httpx.Response(200, content=line).json() for line in response.text.splitlines()]


def stdout(events: list[dict[str, Any]]) -> str:
    return "".join(e["content"]["text"] for e in events
                   if e["msg_type"] == "stream" and e["content"]["name"] == "stdout")


async def channel_stdout(gw: GatewayProcess, sandbox_id: str, code: str) -> str:
    """Run ``code`` through the Jupyter channels WebSocket, as JupyterLab would."""
    async with websocket(ws_url(gw, kernel_id_of(sandbox_id))) as ws:
        out, _ = await ws_run(ws, code)
    return out


def open_notebook(http: httpx.Client, path: str, sandbox_id: str) -> str:
    """Bind a notebook to the sandbox's kernel through /api/sessions, as JupyterLab does."""
    response = http.post("/api/sessions", json={"path": path, "type": "notebook",
                                                "kernel": {"id": kernel_id_of(sandbox_id)}})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def restart(gw: GatewayProcess) -> str:
    """Start the killed gateway again; say how long until it served, and until its pool was
    full again."""
    started = time.monotonic()
    gw.start()  # returns once the gateway listens: recovery is done by then
    serving = time.monotonic() - started
    gw.wait_ready()
    recovery = re.findall(r"re-adopted .* in [0-9.]+ s", gw.log())[-1]
    return (f"serving after {serving:.2f} s, pool full after {time.monotonic() - started:.2f} s"
            f" ({recovery})")


def test_a_killed_gateway_re_adopts_live_sandboxes_and_reaps_the_rest(
        gateway: GatewayProcess, docker_client: docker.DockerClient) -> None:
    gateway.start().wait_ready()
    with gateway.http() as http:
        kept = create(http, metadata={"who": "kept"}, env={"GREETING": "hi"})
        lost = create(http)
        run(http, kept, "x = 42")
        assert stdout(run(http, kept, "print('before', x)")) == "before 42\n"
        run(http, lost, "y = 7")
        notebook_session = open_notebook(http, "kept.ipynb", kept)
        open_notebook(http, "lost.ipynb", lost)
        gateway.wait_ready()
        warm = [c["Id"] for c in gateway.containers()
                if c["Labels"]["org.sandcell.sandbox"] not in (kept, lost)]
    gateway.kill()
    lost_container = gateway.container_of(lost)
    assert lost_container is not None
    docker_client.api.remove_container(lost_container["Id"], force=True)
    orphan = docker_client.containers.run(
        IMAGE, entrypoint=["sleep", "600"], detach=True, network_mode="none",
        labels={"org.sandcell.gateway": gateway.gateway_id,
                "org.sandcell.sandbox": "sbx_00000000000000ff"})
    try:
        print(f"\nrestart after kill -9 (1 adopted, 1 reaped, 2 removed): {restart(gateway)}")
        with gateway.http() as http:
            described = http.get(f"/api/v1/sandboxes/{kept}")
            assert described.status_code == 200, f"not re-adopted: {described.text}"
            assert described.json()["state"] == "running"
            assert described.json()["metadata"] == {"who": "kept"}
            after = run(http, kept, "import os; print(x, os.environ['GREETING'])")
            assert stdout(after) == "42 hi\n"
            assert [e["content"]["execution_count"] for e in after
                    if e["msg_type"] == "execute_reply"] == [3]  # same kernel, no restart
            assert http.post(f"/api/v1/sandboxes/{kept}/interrupt").status_code == 204
            assert kernel_id_of(kept) in {k["id"] for k in http.get("/api/kernels").json()}
            # JupyterLab's notebook→kernel binding came back with its kernel, not the lost one's
            sessions = http.get("/api/sessions").json()
            assert [(s["id"], s["path"], s["kernel"]["id"]) for s in sessions] == [
                (notebook_session, "kept.ipynb", kernel_id_of(kept))]
            gone = http.get(f"/api/v1/sandboxes/{lost}")
            assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
            lost_notebook = http.get(f"/api/v1/sandboxes/{lost}/notebook").json()
            assert [c["source"] for c in lost_notebook["cells"]] == ["y = 7"]
            assert "gone" in lost_notebook["metadata"]["sandcell"]["deleted_reason"]
            notebook = http.get(f"/api/v1/sandboxes/{kept}/notebook").json()
            assert [c["execution_count"] for c in notebook["cells"]] == [1, 2, 3]
            assert asyncio.run(channel_stdout(gateway, kept, "print(x + 1)")) == "43\n"
            wait_for(lambda: not {orphan.id, *warm} & {c["Id"] for c in gateway.containers()},
                     30, "the orphan and the old warm sandbox to be reaped")
            # kept + min_ready fresh warm ones; nothing else of ours survives
            wait_for(lambda: len(gateway.containers()) == 2, 30, "exactly 2 containers")
            assert http.delete(f"/api/v1/sandboxes/{kept}").status_code == 204
            wait_for(lambda: gateway.container_of(kept) is None, 30, "the kept one's removal")
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            orphan.remove(force=True)


def test_adopted_sandboxes_still_expire_and_still_notice_death(
        gateway: GatewayProcess, docker_client: docker.DockerClient) -> None:
    gateway.start().wait_ready()
    with gateway.http() as http:
        short = create(http, timeout=30)
        doomed = create(http)
        busy = create(http)
        with contextlib.suppress(httpx.HTTPError), http.stream(
                "POST", f"/api/v1/sandboxes/{busy}/execute",
                json={"code": "import time; time.sleep(600)"}) as response:
            next(response.iter_lines())  # the cell runs: crash in the middle of it
            gateway.kill()
    timings = restart(gateway)
    print(f"\nrestart after kill -9 (3 adopted, 1 mid-cell): {timings}")
    assert "re-adopted 3 sandbox(es)" in timings  # short too: its reason below is "expired"
    with gateway.http() as http:
        # the cell whose client the crash cut off was interrupted: the kernel is free again
        assert http.get(f"/api/v1/sandboxes/{busy}").json()["state"] == "running"
        assert stdout(run(http, busy, "print('free')")) == "free\n"
        assert http.delete(f"/api/v1/sandboxes/{busy}").status_code == 204
        container = gateway.container_of(doomed)
        assert container is not None
        docker_client.api.kill(container["Id"])
        wait_for(lambda: http.get(f"/api/v1/sandboxes/{doomed}").json()["state"] == "dead", 30,
                 "the adopted sandbox's death to be noticed")
        wait_for(lambda: http.get(f"/api/v1/sandboxes/{short}").status_code == 404, 60,
                 "the adopted sandbox's TTL to expire")
        notebook = http.get(f"/api/v1/sandboxes/{short}/notebook").json()
        assert notebook["metadata"]["sandcell"]["deleted_reason"].startswith("expired")
        assert http.delete(f"/api/v1/sandboxes/{doomed}").status_code == 204


def test_docker_outage_is_a_503_and_the_gateway_recovers_on_its_own(
        tmp_path: Path, docker_client: docker.DockerClient) -> None:
    proxy = SocketProxy(tmp_path / "docker.sock")
    proxy.start()
    extra = f'docker_host = "unix://{proxy.path}"'
    # adaptive off: the pool wants exactly min_ready (1), so its starts fail one at a time
    config = CONFIG.replace("{extra}", extra).replace("max_total = 4",
                                                      "max_total = 4\nadaptive = false")
    gw = GatewayProcess(tmp_path, config)
    try:
        gw.start().wait_ready()
        with gw.http() as http:
            live = create(http)
            gw.wait_ready()
            assert gw.health()["docker"]["reachable"] is True
            proxy.cut()
            outage = time.monotonic()
            health = wait_for(lambda: (h := gw.health())["status"] == "degraded" and h, 10,
                              "/health to report Docker unreachable")
            assert health["docker"]["reachable"] is False
            assert "unreachable" in health["docker"]["error"]
            warm = create(http)  # a sandbox already warm is still handed out (no Docker call)
            refused = http.post("/api/v1/sandboxes", json={})
            assert refused.status_code == 503, refused.text
            error = refused.json()["error"]
            assert error["code"] == "backend_unavailable" and "Docker is unreachable" in \
                error["message"] and error["request_id"]
            for response in (http.delete(f"/api/v1/sandboxes/{live}"),
                             http.post(f"/api/v1/sandboxes/{live}/restart")):
                assert response.status_code == 503
                assert response.json()["error"]["code"] == "backend_unavailable"
            # the sandbox kept its container and still runs code: kernels need no Docker call
            assert stdout(run(http, live, "print(6 * 7)")) == "42\n"
            # three failed starts take >= 3 s of backoff (1 s, then 2 s); a spinning loop
            # would fail hundreds of times in that while
            wait_for(lambda: gw.health()["pools"]["python"]["failed_starts"] >= 3, 20,
                     "three refill attempts to fail")
            assert gw.process is not None and gw.process.poll() is None
            outage_seconds = time.monotonic() - outage
            proxy.restore()
            restored = time.monotonic()
            wait_for(lambda: http.post("/api/v1/sandboxes", json={}).status_code == 201, 30,
                     "a create to succeed again")
            print(f"\ndocker-restore-to-first-create: {time.monotonic() - restored:.2f} s "
                  f"(outage lasted {outage_seconds:.1f} s)")
            failures = gw.log().count("pool python: ")
            # Backoff, not a spin (the schedule itself: tests/gateway/test_pool.py). One start
            # at a time, the n-th failure waits 2 ** (n - 1) s of wall clock before the next
            # try: three failures took at least 1 + 2 s, and in T s at most log2(T + 1) + 1
            # fail (one more for a try in flight as Docker came back). Load only makes the
            # tries later, so neither bound can flake; a loop without backoff breaks both.
            assert outage_seconds >= 3, f"three failed starts in {outage_seconds:.2f} s"
            bound = math.log2(1 + outage_seconds) + 2
            assert 3 <= failures <= bound, f"{failures} failed starts in {outage_seconds:.1f} s"
            # the events watcher reconnected: a death after the outage is still noticed
            container = gw.container_of(live)
            assert container is not None
            docker_client.api.kill(container["Id"])
            wait_for(lambda: http.get(f"/api/v1/sandboxes/{live}").json()["state"] == "dead",
                     30, "the death after the outage to be noticed")
            for sandbox_id in (live, warm):
                assert http.delete(f"/api/v1/sandboxes/{sandbox_id}").status_code == 204
    finally:
        if gw.process is not None:
            gw.stop()
        leftovers = gw.containers()
        assert leftovers == [], f"containers left behind: {leftovers}\n{gw.log()[-3000:]}"
