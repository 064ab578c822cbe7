"""Idle culling on a real gateway: an untouched sandbox goes, a used one stays, and both the
404 and a waiting execution say why. (The policy itself: tests/gateway/test_culling.py.)"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import sandcell
from sandcell_gateway.testing import GatewayProcess, wait_for

pytestmark = pytest.mark.docker

IDLE_TIMEOUT = 3
CONFIG = f"""
[gateway]
gateway_id = "{{gateway_id}}"
idle_timeout = {IDLE_TIMEOUT}

[templates.python]
min_ready = 2
max_total = 4

[plugins]
enabled = false
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with GatewayProcess(tmp_path_factory.mktemp("culling"), CONFIG) as gw:
        gw.wait_ready()
        yield gw
    assert gw.containers() == [], gw.log()


def containers_of(gateway: GatewayProcess, sandbox_id: str) -> list[str]:
    return [c["Id"] for c in gateway.containers()
            if c["Labels"].get("org.sandcell.sandbox") == sandbox_id]


def test_idle_sandbox_is_culled_and_an_active_one_kept(gateway: GatewayProcess) -> None:
    with gateway.http() as http:
        gateway.wait_ready()
        started = time.monotonic()
        idle = http.post("/api/v1/sandboxes", json={}).json()["id"]
        assert containers_of(gateway, idle)
        active = http.post("/api/v1/sandboxes", json={}).json()["id"]

        def idle_gone() -> bool:
            # each poll executes on `active`: client activity, so it must survive
            ran = http.post(f"/api/v1/sandboxes/{active}/execute", json={"code": "1+1"})
            assert '"execute_result"' in ran.text, ran.text
            return http.get(f"/api/v1/sandboxes/{idle}").status_code == 404

        wait_for(idle_gone, 30, "the idle sandbox to be culled")
        assert time.monotonic() - started >= IDLE_TIMEOUT  # not before its time
        gone = http.get(f"/api/v1/sandboxes/{idle}").json()["error"]
        assert "culled: idle for" in gone["message"], gone
        wait_for(lambda: not containers_of(gateway, idle), 30, "the idle container to go")
        assert http.get(f"/api/v1/sandboxes/{active}").status_code == 200
        assert containers_of(gateway, active)
        assert "sandbox %s culled: idle" % idle in gateway.log()
        http.delete(f"/api/v1/sandboxes/{active}")


def test_a_cell_sleeping_forever_is_culled_too(gateway: GatewayProcess) -> None:
    """Idle means no client activity, even while the kernel is busy: the waiting client
    learns why its cell ended."""
    with sandcell.Client(base_url=gateway.url, token=gateway.token) as client:
        session = client.sessions.create()
        with pytest.raises(sandcell.SandboxError) as info:
            session.execute("import time\ntime.sleep(10**6)")
        assert info.value.code == "sandbox_removed"
        assert "culled: idle for" in info.value.message
        # the stream is told first; the sandbox goes once its container is removed
        wait_for(lambda: _gone(client, session.id), 30, "the culled sandbox to be gone")
        with pytest.raises(sandcell.NotFoundError, match="culled"):
            client.sessions.get(session.id)


def _gone(client: sandcell.Client, sandbox_id: str) -> bool:
    try:
        client.sessions.get(sandbox_id)
    except sandcell.NotFoundError:
        return True
    return False
