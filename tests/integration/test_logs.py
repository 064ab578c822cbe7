"""``sandcell serve --log-format json`` on real Docker: every log line is one JSON object, the
lines of a request carry its X-Request-Id, tenant and sandbox, and no secret (the token, a
wrong token, an env value given to a sandbox) appears anywhere in the log, even at DEBUG."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tornado.websocket

from sandcell_gateway.testing import GatewayProcess

pytestmark = pytest.mark.docker

CONFIG = """
[gateway]
gateway_id = "{gateway_id}"

[templates.python]
min_ready = 1
max_total = 2

[plugins]
enabled = false
"""
# What the gateway prints on stdout (not log records) next to its log on stderr.
PRINTED = ("Sandcell gateway ready at ",)


class JsonLoggingGateway(GatewayProcess):
    def command(self) -> list[str]:
        return [*super().command(), "--log-format", "json", "--log-level", "DEBUG"]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[JsonLoggingGateway]:
    gateway = JsonLoggingGateway(tmp_path, CONFIG)
    gateway.start()
    try:
        gateway.wait_ready("python", timeout=120)
        yield gateway
    finally:
        gateway.stop()
        assert gateway.containers() == [], gateway.log()


def records(log: str) -> list[dict[str, Any]]:
    """The log's records; any line that is not one is a printed announcement."""
    lines = [line for line in log.splitlines() if line.strip()]
    assert [line for line in lines if not line.startswith("{")
            and not line.startswith(PRINTED)] == []
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_json_logs_name_each_request_and_hold_no_secret(gateway: JsonLoggingGateway) -> None:
    env_secret, wrong = secrets.token_urlsafe(24), secrets.token_urlsafe(16)
    auth = {"Authorization": f"Bearer {gateway.token}"}
    with httpx.Client(base_url=gateway.url, timeout=60) as http:
        created = http.post("/api/v1/sandboxes", json={"env": {"API_KEY": env_secret}},
                            headers={**auth, "X-Request-Id": "it-create-1"})
        assert created.status_code == 201, created.text
        sandbox = created.json()["id"]
        ran = http.post(f"/api/v1/sandboxes/{sandbox}/execute", headers=auth, json={
            "code": "import os; print(len(os.environ['API_KEY']))"})
        assert str(len(env_secret)) in ran.text  # the value arrived, and was used
        assert http.get("/api/v1/sandboxes", params={"token": gateway.token}).status_code == 200
        assert http.get("/api/v1/sandboxes", params={"token": wrong}).status_code == 401
        refused = http.get("/api/v1/sandboxes", headers={"Authorization": f"Bearer {wrong}"})
        assert refused.status_code == 401
        missing = http.delete("/api/v1/sandboxes/sbx_0000000000000000",
                              headers={**auth, "X-Request-Id": "it-missing-1"})
        assert missing.json()["error"]["request_id"] == "it-missing-1"
        assert http.delete(f"/api/v1/sandboxes/{sandbox}", headers=auth).status_code == 204
    assert gateway.stop() == 0
    log = gateway.log()
    for secret in (gateway.token, wrong, env_secret):
        assert secret not in log
    found = records(log)
    assert {"time", "level", "logger", "event", "request_id", "tenant", "sandbox_id",
            "duration"} <= set(found[0])
    by_id = {r["request_id"]: r for r in found if r["logger"] == "tornado.access"}
    assert (by_id["it-create-1"]["status"], by_id["it-create-1"]["tenant"],
            by_id["it-create-1"]["sandbox_id"]) == (201, "default", sandbox)
    assert by_id["it-create-1"]["duration"] > 0
    assert (by_id["it-missing-1"]["status"], by_id["it-missing-1"]["sandbox_id"]) == \
        (404, "sbx_0000000000000000")
    assert refused.headers["X-Request-Id"] in by_id


@pytest.mark.anyio
async def test_a_websocket_clients_query_token_is_redacted_and_its_sandbox_named(
        gateway: JsonLoggingGateway) -> None:
    """Jupyter clients put the token in the channels URL; the access line must not."""
    with gateway.http() as http:
        kernel = http.post("/api/kernels", json={"name": "python"}).json()
    base = gateway.url.replace("http://", "ws://")
    ws = await tornado.websocket.websocket_connect(
        f"{base}/api/kernels/{kernel['id']}/channels?token={gateway.token}")
    ws.close()
    while await ws.read_message() is not None:  # until the close is through
        pass
    with gateway.http() as http:
        assert http.delete(f"/api/kernels/{kernel['id']}").status_code == 204
    assert gateway.stop() == 0
    log = gateway.log()
    assert gateway.token not in log
    [upgrade] = [r for r in records(log) if r.get("status") == 101]
    assert upgrade["path"] == f"/api/kernels/{kernel['id']}/channels?token=REDACTED"
    assert upgrade["tenant"] == "default" and upgrade["sandbox_id"].startswith("sbx_")
