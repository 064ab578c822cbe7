"""A sandbox's env values reach its kernel and nothing else: not the store file (nor its WAL),
not the gateway's log, not an API answer, not the exported notebook; and they survive a
``kill -9`` of the gateway, sealed, to be set again when the re-adopted sandbox restarts.

The kernel's view is checked through a hash of the value, so the cells (recorded into the
history and the notebook) never contain the value themselves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandcell_gateway.wire import kernel_id_of, sandbox_id_of
from sandcell_gateway.sealing import key_path_for
from sandcell_gateway.testing import GatewayProcess

from .test_restart import CONFIG, create, restart, run, stdout

pytestmark = pytest.mark.docker

SECRET = "sk-proj-9f8e7d6c5b4a39281706SANDCELLTEST"
KERNEL_SECRET = "kernel-secret-0a1b2c3d4e5f6071SANDCELLTEST"
HASH_CELL = ("import hashlib, os; print(*(hashlib.sha256(os.environ.get(k, '').encode())"
             ".hexdigest() for k in ('OPENAI_API_KEY', 'KERNEL_SECRET')))")


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path, CONFIG.replace("{extra}", ""))
    try:
        yield gw
    finally:
        if gw.process is not None:
            gw.stop()
            assert gw.containers() == [], f"containers left behind\n{gw.log()[-3000:]}"


def store_files(gw: GatewayProcess) -> list[Path]:
    """The store, its WAL and shared-memory files: everything SQLite writes."""
    stores = list((gw.workdir / "data" / "sandcell").glob("*.sqlite3"))
    assert len(stores) == 1, stores
    return [p for p in (stores[0], Path(f"{stores[0]}-wal"), Path(f"{stores[0]}-shm"))
            if p.exists()]


def answers(http: httpx.Client, sandbox_id: str, kernel_id: str) -> dict[str, str]:
    """Every API answer that describes the two sandboxes, by route."""
    kernel = kernel_id_of(sandbox_id)
    routes = ["/api/v1/sandboxes", f"/api/v1/sandboxes/{sandbox_id}",
              f"/api/v1/sandboxes/{sandbox_id}/notebook", "/api/kernels", f"/api/kernels/{kernel}",
              f"/api/kernels/{kernel_id}", "/api/sessions", "/api/v1/health"]
    texts = {}
    for route in routes:
        response = http.get(route)
        assert response.status_code == 200, (route, response.text)
        texts[route] = response.text
    return texts


def assert_nowhere(gw: GatewayProcess, texts: dict[str, str]) -> None:
    for secret in (SECRET, KERNEL_SECRET):
        for path in store_files(gw):
            assert secret.encode() not in path.read_bytes(), f"{secret} in {path.name}"
        assert secret not in gw.log(), "the value is in the gateway's log"
        leaked = [route for route, text in texts.items() if secret in text]
        assert leaked == [], f"the value is in the answers of {leaked}"


def test_env_values_reach_the_kernel_and_nothing_else(gateway: GatewayProcess) -> None:
    gateway.start().wait_ready()
    expected = f"{sha(SECRET)} {sha('')}\n"
    with gateway.http() as http:
        created = http.post("/api/v1/sandboxes", json={"env": {"OPENAI_API_KEY": SECRET}})
        assert created.status_code == 201, created.text
        sandbox_id = created.json()["id"]
        kernel = http.post("/api/kernels", json={"name": "python",
                                                 "env": {"KERNEL_SECRET": KERNEL_SECRET}})
        assert kernel.status_code == 201, kernel.text
        kernel_id = kernel.json()["id"]
        session = http.post("/api/sessions", json={"path": "s.ipynb", "type": "notebook",
                                                   "kernel": {"id": kernel_id}})
        assert session.status_code == 201, session.text
        assert stdout(run(http, sandbox_id, HASH_CELL)) == expected
        # a Jupyter client's KERNEL_* variable reached its kernel too
        assert stdout(run(http, sandbox_id_of(kernel_id), HASH_CELL)) == \
            f"{sha('')} {sha(KERNEL_SECRET)}\n"
        texts = {"create": created.text, "kernel": kernel.text, "session": session.text,
                 **answers(http, sandbox_id, kernel_id)}
        assert_nowhere(gateway, texts)
    assert key_path_for(store_files(gateway)[0]).stat().st_mode & 0o777 == 0o600


def test_a_killed_gateway_re_applies_sealed_env_when_the_re_adopted_sandbox_restarts(
        gateway: GatewayProcess) -> None:
    gateway.start().wait_ready()
    expected = f"{sha(SECRET)} {sha('')}\n"
    with gateway.http() as http:
        sandbox_id = create(http, env={"OPENAI_API_KEY": SECRET})
        assert stdout(run(http, sandbox_id, HASH_CELL)) == expected
    gateway.kill()
    assert_nowhere(gateway, {})  # what a crash leaves on disk holds no value either
    print(f"\nrestart after kill -9: {restart(gateway)}")
    with gateway.http() as http:
        assert http.get(f"/api/v1/sandboxes/{sandbox_id}").status_code == 200, gateway.log()
        assert stdout(run(http, sandbox_id, HASH_CELL)) == expected  # the same kernel
        restarted = http.post(f"/api/v1/sandboxes/{sandbox_id}/restart")
        assert restarted.status_code == 200, restarted.text
        # a fresh kernel: only the store's sealed record can have given it the value
        assert stdout(run(http, sandbox_id, "print(len(In))")) == "2\n"
        assert stdout(run(http, sandbox_id, HASH_CELL)) == expected
        texts = answers(http, sandbox_id, kernel_id_of(sandbox_id))
        assert_nowhere(gateway, {"restart": restarted.text, **texts})
        assert http.delete(f"/api/v1/sandboxes/{sandbox_id}").status_code == 204
