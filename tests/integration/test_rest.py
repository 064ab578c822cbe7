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

# Bad ids, bodies, sizes, methods and routes: test_bad_input.py sweeps every route.
