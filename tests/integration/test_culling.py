"""Idle culling on a real gateway: an untouched sandbox goes, a used one stays, and both the
404 and a waiting execution say why, to the sandbox's own tenant only. (The policy itself:
tests/gateway/test_culling.py.)"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import docker
import httpx
import pytest
import tornado.httpclient
import tornado.websocket

import sandcell
from sandcell_gateway.tenants import hash_token
from sandcell_gateway.testing import GatewayProcess, wait_for

from .test_tenants import UNKNOWN, answers_about, kernel_id

pytestmark = pytest.mark.docker

# alice owns the sandboxes that go; bob, and the gateway's own token, are other tenants
TOKENS = {name: f"{name}-{secrets.token_urlsafe(12)}" for name in ("alice", "bob")}

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

[tenants.alice]
token_sha256 = "{hash_token(TOKENS['alice'])}"

[tenants.bob]
token_sha256 = "{hash_token(TOKENS['bob'])}"
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


def tenant(gateway: GatewayProcess, name: str) -> httpx.Client:
    token = TOKENS.get(name, gateway.token)
    return httpx.Client(base_url=gateway.url, timeout=60,
                        headers={"Authorization": f"Bearer {token}"})


def _kill(gateway: GatewayProcess, sandbox_id: str) -> None:
    container = gateway.container_of(sandbox_id)
    assert container is not None
    client = docker.APIClient()
    try:
        client.kill(container["Id"])
    finally:
        client.close()


def _culled(owner: httpx.Client, sandbox_id: str) -> bool:
    gone = owner.get(f"/api/v1/sandboxes/{sandbox_id}")
    return gone.status_code == 404 and "culled: idle for" in gone.json()["error"]["message"]


def _expired(owner: httpx.Client, sandbox_id: str) -> bool:
    gone = owner.get(f"/api/v1/sandboxes/{sandbox_id}")
    return gone.status_code == 404 and "expired" in gone.json()["error"]["message"]


def _dead(owner: httpx.Client, sandbox_id: str) -> bool:
    answer = owner.get(f"/api/v1/sandboxes/{sandbox_id}")
    # dead, or already culled (idle_timeout is 3 s here): the owner is told either way
    return (answer.status_code == 200 and answer.json()["state"] == "dead") or \
        _culled(owner, sandbox_id)


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["culled", "expired", "died"])
async def test_another_tenant_gets_no_hint_that_a_removed_sandbox_existed(
        gateway: GatewayProcess, how: str) -> None:
    """README, security defaults: another tenant's sandbox answers like one that never
    existed, on every route, also once it was culled, expired or died; only its owner
    learns what became of it."""
    with tenant(gateway, "alice") as alice:
        created = alice.post("/api/v1/sandboxes", json={"timeout": 1} if how == "expired" else {})
        assert created.status_code == 201, created.text
        sandbox_id = created.json()["id"]
        try:
            if how == "died":
                _kill(gateway, sandbox_id)
            gone = {"culled": _culled, "expired": _expired, "died": _dead}[how]
            wait_for(lambda: gone(alice, sandbox_id), 30, f"the owner to see it {how}")
            for other in ("bob", "default"):
                with tenant(gateway, other) as client:
                    assert answers_about(client, sandbox_id) == answers_about(client, UNKNOWN)
                    assert await _websocket_refusal(gateway, other, sandbox_id) == \
                        await _websocket_refusal(gateway, other, UNKNOWN) == 404
        finally:
            alice.delete(f"/api/v1/sandboxes/{sandbox_id}")


async def _websocket_refusal(gateway: GatewayProcess, name: str, sandbox_id: str) -> int:
    token = TOKENS.get(name, gateway.token)
    url = (f"{gateway.url.replace('http', 'ws')}/api/kernels/{kernel_id(sandbox_id)}"
           f"/channels?token={token}")
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await tornado.websocket.websocket_connect(url)
    return refused.value.code
