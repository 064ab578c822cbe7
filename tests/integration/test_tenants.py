"""Tenants on a real gateway: isolation, caps and rates, over real HTTP, the real SDK and a
real Jupyter WebSocket, with the containers counted by their Docker labels.

The gateway here is this module's own, with four tenants and tight limits:

* ``alice``: one sandbox at most (the tenant cap);
* ``bob``: two sandboxes; the neighbour who must keep working;
* ``carol``: slow rates (a creation every 4 s; an execution every 4 s, burst 2), slow enough
  that a loaded machine's latency cannot refill a bucket between two requests;
* ``dave``: carol's rates, spent through the Jupyter routes and WebSocket;
* ``default``: the gateway's own token (``SANDCELL_TOKEN``), default limits;

and ``[gateway] max_sandboxes = 3`` for everyone together.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import tornado.httpclient
import tornado.websocket

import sandcell
from sandcell_gateway.imagebuild import ensure_images
from sandcell_gateway.tenants import hash_token
from sandcell_gateway.testing import GatewayProcess, wait_for

from .conftest import TEST_PLUGIN
from .test_jupyter_api import replies, request, send

pytestmark = pytest.mark.docker

TOKENS = {name: f"{name}-{secrets.token_urlsafe(12)}"
          for name in ("alice", "bob", "carol", "dave")}
CONFIG = f"""
[gateway]
gateway_id = "{{gateway_id}}"
max_sandboxes = 3
claim_timeout = 60

[templates.python]
min_ready = 2
max_total = 6

[plugins]
dir = "empty-plugins"
paths = ["{TEST_PLUGIN}"]
min_ready = 1
max_total = 2

[tenants.alice]
token_sha256 = "{hash_token(TOKENS['alice'])}"
max_sandboxes = 1

[tenants.bob]
token_sha256 = "{hash_token(TOKENS['bob'])}"
max_sandboxes = 2

[tenants.carol]
token_sha256 = "{hash_token(TOKENS['carol'])}"
create_rate = 0.25
create_burst = 1
execute_rate = 0.25
execute_burst = 2

[tenants.dave]
token_sha256 = "{hash_token(TOKENS['dave'])}"
create_rate = 0.25
create_burst = 1
execute_rate = 0.25
execute_burst = 2
"""
UNKNOWN = "sbx_0123456789abcdef"
PLUGIN_INVOKE = ("/api/v1/plugins/sandcell_test_plugin/invoke",
                 {"input": {"mode": "steps", "steps": 0}})


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    ensure_images(["python", "plugin-python"])
    workdir = tmp_path_factory.mktemp("tenants")
    (workdir / "empty-plugins").mkdir()
    gateway = GatewayProcess(workdir, CONFIG).start()
    try:
        gateway.wait_ready()
        wait_for(lambda: gateway.health()["plugins"]["sandcell_test_plugin"]["ready"] >= 1,
                 120, "a warm plugin worker")
        yield gateway
    finally:
        gateway.stop()
        leftovers = gateway.containers()
        assert leftovers == [], f"gateway left containers behind: {leftovers}\n{gateway.log()}"


def token_of(gw: GatewayProcess, tenant: str) -> str:
    return gw.token if tenant == "default" else TOKENS[tenant]


def http(gw: GatewayProcess, tenant: str) -> httpx.Client:
    return httpx.Client(base_url=gw.url, timeout=60,
                        headers={"Authorization": f"Bearer {token_of(gw, tenant)}"})


def sdk(gw: GatewayProcess, tenant: str) -> sandcell.Client:
    return sandcell.Client(base_url=gw.url, token=token_of(gw, tenant))


def kernel_id(sandbox_id: str) -> str:
    """The hyphenated spelling Jupyter routes use (see wire.kernel_id_of)."""
    hexpart = sandbox_id[4:]
    return "sbx-" + "-".join(hexpart[i:i + 4] for i in range(0, 16, 4))


def error_body(response: httpx.Response, sandbox_id: str) -> tuple[int, dict[str, Any]]:
    """Status and error body with the id and request id masked, for comparing two answers."""
    error = dict(response.json()["error"])
    assert error.pop("request_id")
    error["message"] = error["message"].replace(sandbox_id, "<id>").replace(
        kernel_id(sandbox_id), "<id>")
    return response.status_code, error


def steady(gw: GatewayProcess) -> dict[str, Any]:
    """Wait until no container is starting, then return the pools and the container count."""
    def settled() -> dict[str, Any] | None:
        health = gw.health()
        pools = {**health["pools"], **health["plugins"]}
        if any(p["starting"] or p["ready"] < p["min_ready"] for p in pools.values()):
            return None
        return {"pools": pools, "containers": len(gw.containers())}

    return wait_for(settled, 120, "the pools to settle")


def test_a_wrong_token_is_401_everywhere(gw: GatewayProcess) -> None:
    for token in ["nope", hash_token(TOKENS["alice"]), TOKENS["alice"] + "x"]:
        headers = {"Authorization": f"Bearer {token}"}
        for method, path in [("GET", "/api/v1/sandboxes"), ("POST", "/api/v1/sandboxes"),
                             ("GET", "/api/kernels"), ("POST", PLUGIN_INVOKE[0])]:
            response = httpx.request(method, gw.url + path, headers=headers, json={})
            assert response.status_code == 401, (token, path)
            assert response.json()["error"]["code"] == "unauthorized"
    with sandcell.Client(base_url=gw.url, token="nope") as client, \
            pytest.raises(sandcell.AuthenticationError):
        client.sessions.list()


@pytest.mark.anyio
async def test_a_wrong_token_cannot_open_a_websocket(gw: GatewayProcess) -> None:
    with sdk(gw, "bob") as client, client.sessions.create() as session:
        url = f"{gw.url.replace('http', 'ws')}/api/kernels/{kernel_id(session.id)}/channels"
        with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
            await tornado.websocket.websocket_connect(url + "?token=nope")
        assert refused.value.code == 401


def test_a_tenant_cannot_reach_anothers_sandbox(gw: GatewayProcess) -> None:
    with sdk(gw, "alice") as alice, alice.sessions.create() as mine, http(gw, "bob") as bob:
        assert mine.execute("x = 41; x + 1").text == "42"
        foreign, unknown = (answers_about(bob, sandbox_id) for sandbox_id in (mine.id, UNKNOWN))
        assert foreign == unknown, "another tenant's id must answer like an unknown one"
        assert {status for status, _ in foreign} == {404}
        assert mine.id not in [s["id"] for s in bob.get("/api/v1/sandboxes").json()["sandboxes"]]
        assert bob.get("/api/kernels").json() == []
        assert bob.get("/api/sessions").json() == []
        with sdk(gw, "bob") as bob_sdk, pytest.raises(sandcell.NotFoundError):
            bob_sdk.sessions.get(mine.id)
        # nothing bob tried reached alice's kernel: x is still 41, not restarted, not deleted
        assert mine.execute("x").text == "41"
        assert [s.id for s in alice.sessions.list()] == [mine.id]


def answers_about(bob: httpx.Client, sandbox_id: str) -> list[tuple[int, dict[str, Any]]]:
    """Every HTTP route naming a sandbox, as ``bob`` (any tenant's client) calls it, with the
    id masked in the answers."""
    answers = [
        bob.get(f"/api/v1/sandboxes/{sandbox_id}"),
        bob.post(f"/api/v1/sandboxes/{sandbox_id}/execute", json={"code": "x = 0"}),
        bob.post(f"/api/v1/sandboxes/{sandbox_id}/interrupt"),
        bob.post(f"/api/v1/sandboxes/{sandbox_id}/restart"),
        bob.get(f"/api/v1/sandboxes/{sandbox_id}/notebook"),
        bob.delete(f"/api/v1/sandboxes/{sandbox_id}"),
        bob.get(f"/api/kernels/{kernel_id(sandbox_id)}"),
        bob.post(f"/api/kernels/{kernel_id(sandbox_id)}/interrupt"),
        bob.post(f"/api/kernels/{kernel_id(sandbox_id)}/restart"),
        bob.delete(f"/api/kernels/{kernel_id(sandbox_id)}"),
        bob.post("/api/sessions", json={"path": "x.ipynb", "type": "notebook",
                                        "kernel": {"id": kernel_id(sandbox_id)}}),
    ]
    return [error_body(r, sandbox_id) for r in answers]


@pytest.mark.anyio
async def test_a_tenant_cannot_connect_to_anothers_kernel(gw: GatewayProcess) -> None:
    with sdk(gw, "alice") as alice, alice.sessions.create() as mine:
        base = f"{gw.url.replace('http', 'ws')}/api/kernels"
        for kid in (kernel_id(mine.id), kernel_id(UNKNOWN)):
            with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
                await tornado.websocket.websocket_connect(
                    f"{base}/{kid}/channels?token={TOKENS['bob']}")
            assert refused.value.code == 404
        ws = await tornado.websocket.websocket_connect(
            f"{base}/{kernel_id(mine.id)}/channels?token={TOKENS['alice']}")
        ws.close()


def test_caps_answer_429_and_claim_nothing(gw: GatewayProcess) -> None:
    with sdk(gw, "alice") as alice, alice.sessions.create(), http(gw, "alice") as raw:
        before = steady(gw)
        refused = [raw.post("/api/v1/sandboxes", json={}),
                   raw.post("/api/kernels", json={"name": "python"}),
                   raw.post("/api/sessions", json={"path": "a.ipynb", "type": "notebook",
                                                   "kernel": {"name": "python"}})]
        for response in refused:
            assert response.status_code == 429, response.text
            assert response.json()["error"]["code"] == "tenant_sandbox_limit"
            assert "max_sandboxes is 1" in response.json()["error"]["message"]
            assert int(response.headers["Retry-After"]) >= 1
        with pytest.raises(sandcell.RateLimitError) as info:
            alice.sessions.create()
        assert info.value.code == "tenant_sandbox_limit" and info.value.retry_after
        assert "Close sessions" in str(info.value)
        assert steady(gw) == before  # no claim, no refill, no container started
        assert len(alice.sessions.list()) == 1


def test_the_gateway_cap_counts_every_tenant(gw: GatewayProcess) -> None:
    with sdk(gw, "alice") as alice, sdk(gw, "bob") as bob, alice.sessions.create(), \
            bob.sessions.create(), bob.sessions.create(), http(gw, "default") as default:
        before = steady(gw)
        response = default.post("/api/v1/sandboxes", json={})
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "gateway_sandbox_limit"
        assert "max_sandboxes is 3" in response.json()["error"]["message"]
        assert int(response.headers["Retry-After"]) >= 1
        assert steady(gw) == before
    with sdk(gw, "default") as client, client.sessions.create() as session:  # room again
        assert session.execute("1+1").text == "2"


def test_rates_answer_429_then_admit_after_retry_after(gw: GatewayProcess) -> None:
    with sdk(gw, "carol") as carol, http(gw, "carol") as raw, sdk(gw, "bob") as bob:
        steady(gw)  # a warm sandbox waits: the first claim is instant
        with carol.sessions.create():
            with pytest.raises(sandcell.RateLimitError) as info:  # one per 4 s, burst 1
                carol.sessions.create()
            retry_after = info.value.retry_after
            assert retry_after in (1.0, 2.0, 3.0, 4.0), retry_after
            # The promise under test: a client that waits Retry-After is admitted. The gateway
            # rounds its wait up and counted it from before this answer arrived, so the wait
            # here is at least as long as needed; load only makes it longer. (Not a sleep
            # waiting for something to happen: honouring the header is what a client does.)
            time.sleep(retry_after)
            created = raw.post("/api/v1/sandboxes", json={})
            assert created.status_code == 201, created.text
        assert info.value.code == "rate_limited"
        assert "create_rate" in str(info.value) and f"Retry in {retry_after:g} s" in str(info.value)
        sandbox_id = created.json()["id"]
        try:
            _rate_limits_executions_and_plugin_calls(gw, raw, carol, bob, sandbox_id)
        finally:
            raw.delete(f"/api/v1/sandboxes/{sandbox_id}")


def _rate_limits_executions_and_plugin_calls(gw: GatewayProcess, raw: httpx.Client,
                                             carol: sandcell.Client, bob: sandcell.Client,
                                             sandbox_id: str) -> None:
    """Executions and plugin invocations share carol's execute bucket (0.25/s, burst 2)."""
    session = carol.sessions.get(sandbox_id)
    spent = [_execute(raw, sandbox_id), raw.post(PLUGIN_INVOKE[0], json=PLUGIN_INVOKE[1])]
    refused = [_execute(raw, sandbox_id), raw.post(PLUGIN_INVOKE[0], json=PLUGIN_INVOKE[1])]
    answers = spent + refused
    assert [r.status_code for r in answers] == [200, 200, 429, 429], [r.text for r in answers]
    for response in refused:
        assert response.json()["error"]["code"] == "rate_limited"
        assert "execute_rate" in response.json()["error"]["message"]
        assert int(response.headers["Retry-After"]) >= 1
    with pytest.raises(sandcell.RateLimitError) as info:
        session.execute("1+1")
    assert info.value.retry_after is not None and info.value.retry_after >= 1
    # bob is not throttled by carol's limit: he runs code and plugins meanwhile
    with bob.sessions.create() as neighbour:
        assert neighbour.execute("1+1").text == "2"
    assert bob.plugins.invoke("sandcell_test_plugin", mode="steps", steps=1,
                              progress=False) == {"steps": 1}
    admitted = wait_for(lambda: _admitted(_execute(raw, sandbox_id, "'again'")),
                        info.value.retry_after + 5, "carol's next execution")
    assert "again" in admitted.text


def _admitted(response: httpx.Response) -> httpx.Response | None:
    return None if response.status_code == 429 else response


def _execute(raw: httpx.Client, sandbox_id: str, code: str = "1") -> httpx.Response:
    return raw.post(f"/api/v1/sandboxes/{sandbox_id}/execute", json={"code": code})


def test_the_default_tenant_is_the_gateway_token(gw: GatewayProcess) -> None:
    with sdk(gw, "default") as client, client.sessions.create() as session, \
            http(gw, "alice") as alice:
        assert session.execute("1+1").text == "2"
        assert alice.get(f"/api/v1/sandboxes/{session.id}").status_code == 404


@pytest.mark.anyio
async def test_jupyter_executions_and_restarts_spend_the_tenants_rates(gw: GatewayProcess) -> None:
    """A WebSocket execute_request spends an execution, a restart a creation (dave: 1 creation
    and 2 executions at once, then one every 4 s)."""
    with http(gw, "dave") as raw:
        created = raw.post("/api/kernels", json={"name": "python"})
        assert created.status_code == 201, created.text
        kid = created.json()["id"]
        try:
            restart = raw.post(f"/api/kernels/{kid}/restart")
            assert restart.status_code == 429, restart.text
            assert "create_rate" in restart.json()["error"]["message"]
            ws = await tornado.websocket.websocket_connect(
                f"{gw.url.replace('http', 'ws')}/api/kernels/{kid}/channels?token={TOKENS['dave']}")
            try:
                await _rate_limits_websocket_executions(ws)
            finally:
                ws.close()
        finally:
            raw.delete(f"/api/kernels/{kid}")


async def _rate_limits_websocket_executions(ws: tornado.websocket.WebSocketClientConnection
                                            ) -> None:
    answers = [await _ws_execute(ws, f"ran_{i} = {i}") for i in range(3)]
    assert [reply["content"]["status"] for reply, _ in answers] == ["ok", "ok", "error"]
    refused, iopub = answers[2]
    assert refused["content"]["ename"] == "RateLimitError"
    assert "execute_rate" in refused["content"]["evalue"]
    assert iopub == [("status", "busy"), ("error", "RateLimitError"), ("status", "idle")]
    # the socket stays usable; once the bucket refills, a cell runs, and the refused one never did
    deadline = time.monotonic() + 10
    while True:
        reply, iopub = await _ws_execute(ws, "print(sorted(n for n in dir() if n.startswith('ran_')))")
        if reply["content"]["status"] == "ok":
            break
        assert time.monotonic() < deadline, "the execute bucket never refilled"
        await asyncio.sleep(0.5)  # poll interval
    assert ("stream", "['ran_0', 'ran_1']\n") in iopub


async def _ws_execute(ws: tornado.websocket.WebSocketClientConnection, code: str
                      ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Run ``code`` over Jupyter's JSON framing: its execute_reply, and its IOPub messages as
    (msg_type, state / ename / text), once the reply and the idle status both came."""
    msg = request(code, session="dave")
    await send(ws, msg)
    reply: dict[str, Any] = {}
    iopub: list[tuple[str, str]] = []
    async for out in replies(ws, msg["header"]["msg_id"]):
        content = out["content"]
        if out["channel"] == "shell":
            reply = out
        elif out["msg_type"] in ("status", "error", "stream"):
            iopub.append((out["msg_type"], content.get("execution_state")
                          or content.get("ename") or content.get("text")))
    return reply, iopub
