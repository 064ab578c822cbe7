"""The REST surface over real HTTP: auth, JSON errors, OpenAPI."""

from __future__ import annotations

import httpx
import pytest

from .conftest import Gateway

pytestmark = pytest.mark.docker


def test_health_and_openapi_need_no_token(gateway: Gateway) -> None:
    health = httpx.get(f"{gateway.url}/api/v1/health").json()
    assert health["status"] == "ok" and health["pools"]["python"]["max_total"] == 8
    assert health["plugins"]["subtract_numbers"]["max_total"] == 4  # plugin worker pools too
    assert {"ready", "starting", "claimed", "last_error"} <= set(health["plugins"]["add_numbers"])
    doc = httpx.get(f"{gateway.url}/api/v1/openapi.json").json()
    assert "/api/v1/sandboxes/{sandbox_id}/execute" in doc["paths"]


@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Basic abc"])
def test_bad_tokens_are_401(gateway: Gateway, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    response = httpx.get(f"{gateway.url}/api/v1/sandboxes", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["X-Request-Id"]


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), [
    ("POST", "/api/v1/sandboxes", b"{", 400, "invalid_json"),
    ("POST", "/api/v1/sandboxes", b'{"ttl": 5}', 400, "invalid_request"),
    ("GET", "/api/v1/sandboxes/sbx_0000000000000000", None, 404, "not_found"),
    ("GET", "/api/v1/sandboxes/..%2F..%2Fetc", None, 404, "not_found"),
    ("POST", "/api/v1/sandboxes/sbx_0000000000000000/execute", b'{"code": "1"}', 404,
     "not_found"),
    ("PUT", "/api/v1/sandboxes", b"{}", 405, "method_not_allowed"),
    ("GET", "/api/v1/nothing", None, 404, "not_found"),
    ("POST", "/api/v1/sandboxes", b" " * (2 << 20), 413, "body_too_large"),
])
def test_bad_requests_are_json_errors(gateway: Gateway, method: str, path: str,
                                      body: bytes | None, status: int, code: str) -> None:
    with gateway.http() as http:
        before = http.get("/api/v1/sandboxes").json()
        response = http.request(method, path, content=body)
        assert response.status_code == status
        assert response.json()["error"]["code"] == code
        assert http.get("/api/v1/sandboxes").json() == before
        if status == 405:
            assert response.headers["Allow"] == "GET, POST"


def test_execute_with_bad_body_changes_nothing(gateway: Gateway) -> None:
    with gateway.http() as http:
        sandbox = http.post("/api/v1/sandboxes", json={}).json()
        try:
            bad = http.post(f"/api/v1/sandboxes/{sandbox['id']}/execute", json={"code": 5})
            assert bad.status_code == 400 and "'code' must be a string" in bad.text
            lines = http.post(f"/api/v1/sandboxes/{sandbox['id']}/execute",
                              json={"code": "1+1"}).text.splitlines()
            assert '"execute_result"' in "".join(lines)
        finally:
            http.delete(f"/api/v1/sandboxes/{sandbox['id']}")
