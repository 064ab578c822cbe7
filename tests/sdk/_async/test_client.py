"""Client and session requests against a fake gateway (the sync twin is generated)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

import sandcell

from ..fakes import BASE_URL, REQUEST_ID, TOKEN, FakeGateway, error_response


def make_client(gateway: FakeGateway, **kwargs: Any) -> sandcell.AsyncClient:
    return sandcell.AsyncClient(base_url=BASE_URL, token=TOKEN, transport=gateway.transport, **kwargs)


@pytest.mark.anyio
async def test_create_posts_the_options_as_json_with_the_bearer_token() -> None:
    gateway = FakeGateway()
    async with make_client(gateway) as client:
        session = await client.sessions.create("python", timeout=600, env={"A": "1"}, metadata={"owner": "me"})
    (request,) = gateway.requests
    assert (request.method, str(request.url)) == ("POST", f"{BASE_URL}/api/v1/sandboxes")
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("sandcell-python/")
    assert json.loads(request.content) == {
        "template": "python",
        "timeout": 600,
        "env": {"A": "1"},
        "metadata": {"owner": "me"},
    }
    assert session.id == "sbx_1"
    assert session.info.metadata == {"owner": "me"}
    assert session.info.created_at is not None and session.info.created_at.tzinfo is not None


@pytest.mark.anyio
async def test_create_leaves_unset_options_to_the_gateway() -> None:
    gateway = FakeGateway()
    async with make_client(gateway) as client:
        await client.sessions.create()
    assert json.loads(gateway.requests[0].content) == {"template": "python"}


@pytest.mark.anyio
async def test_leaving_the_session_block_deletes_the_sandbox() -> None:
    gateway = FakeGateway()
    async with make_client(gateway) as client:
        async with await client.sessions.create() as session:
            assert session.id in gateway.sandboxes
    assert gateway.sandboxes == {}
    (delete,) = gateway.sent("DELETE", "/api/v1/sandboxes/sbx_1")
    assert delete.headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.anyio
async def test_close_is_idempotent_and_tolerates_an_already_deleted_sandbox() -> None:
    gateway = FakeGateway()
    async with make_client(gateway) as client:
        session = await client.sessions.create()
        gateway.sandboxes.clear()  # expired on the gateway's side
        await session.close()
        await session.close()
    assert len(gateway.sent("DELETE", "/api/v1/sandboxes/sbx_1")) == 1


@pytest.mark.anyio
async def test_get_and_list_return_the_gateway_s_sandboxes() -> None:
    gateway = FakeGateway()
    gateway.add_sandbox("sbx_a", state="busy")
    gateway.add_sandbox("sbx_b", template="r")
    async with make_client(gateway) as client:
        session = await client.sessions.get("sbx_a")
        listed = await client.sessions.list()
    assert (session.id, session.info.state) == ("sbx_a", "busy")
    assert [(info.id, info.template) for info in listed] == [("sbx_a", "python"), ("sbx_b", "r")]
    assert isinstance(listed[0], sandcell.SandboxInfo)


@pytest.mark.anyio
async def test_get_of_an_unknown_sandbox_raises_not_found_with_the_gateway_s_details() -> None:
    gateway = FakeGateway()
    async with make_client(gateway) as client:
        with pytest.raises(sandcell.NotFoundError) as caught:
            await client.sessions.get("sbx_gone")
    error = caught.value
    assert (error.status_code, error.code, error.request_id) == (404, "not_found", REQUEST_ID)
    assert "sbx_gone" in error.message
    assert "sessions.list()" in str(error)


@pytest.mark.anyio
async def test_interrupt_restart_and_refresh_hit_their_routes() -> None:
    gateway = FakeGateway()
    gateway.add_sandbox("sbx_1")
    async with make_client(gateway) as client:
        session = await client.sessions.get("sbx_1")
        await session.interrupt()
        gateway.sandboxes["sbx_1"]["state"] = "dead"
        assert (await session.refresh()).state == "dead"
        assert session.info.state == "dead"
        assert (await session.restart()).state == "running"
        assert session.info.state == "running"
    assert len(gateway.sent("POST", "/api/v1/sandboxes/sbx_1/interrupt")) == 1
    assert len(gateway.sent("POST", "/api/v1/sandboxes/sbx_1/restart")) == 1


@pytest.mark.anyio
async def test_health_returns_the_gateway_s_document() -> None:
    gateway = FakeGateway()
    async with make_client(gateway) as client:
        health = await client.health()
    assert health["status"] == "ok"
    assert str(gateway.requests[0].url) == f"{BASE_URL}/api/v1/health"


@pytest.mark.anyio
async def test_a_wrong_token_raises_authentication_error_naming_the_fix() -> None:
    gateway = FakeGateway(token="the-real-one")
    async with make_client(gateway) as client:
        with pytest.raises(sandcell.AuthenticationError) as caught:
            await client.sessions.list()
    assert caught.value.status_code == 401
    assert "SANDCELL_TOKEN" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "code", "error_type"),
    [
        (400, "unknown_template", sandcell.BadRequestError),
        (401, "unauthorized", sandcell.AuthenticationError),
        (403, "forbidden", sandcell.PermissionDeniedError),
        (404, "not_found", sandcell.NotFoundError),
        (405, "method_not_allowed", sandcell.APIStatusError),
        (409, "sandbox_closed", sandcell.ConflictError),
        (413, "body_too_large", sandcell.PayloadTooLargeError),
        (429, "rate_limited", sandcell.RateLimitError),
        (500, "internal_error", sandcell.InternalServerError),
        (502, "bad_gateway", sandcell.InternalServerError),
        (503, "pool_exhausted", sandcell.ServiceUnavailableError),
    ],
)
@pytest.mark.anyio
async def test_each_error_status_raises_its_own_class(status: int, code: str, error_type: type) -> None:
    gateway = FakeGateway()
    gateway.fail("POST", "/api/v1/sandboxes", error_response(status, code, "it failed"))
    async with make_client(gateway) as client:
        with pytest.raises(sandcell.APIStatusError) as caught:
            await client.sessions.create()
    assert type(caught.value) is error_type
    assert (caught.value.status_code, caught.value.code, caught.value.message) == (status, code, "it failed")
    assert caught.value.response.status_code == status


@pytest.mark.anyio
async def test_rate_limit_error_carries_retry_after() -> None:
    gateway = FakeGateway()
    gateway.fail("GET", "/api/v1/sandboxes", error_response(429, "rate_limited", "slow down", **{"Retry-After": "3"}))
    async with make_client(gateway) as client:
        with pytest.raises(sandcell.RateLimitError) as caught:
            await client.sessions.list()
    assert caught.value.retry_after == 3.0
    assert "Retry in 3 s" in str(caught.value)


@pytest.mark.anyio
async def test_a_non_json_error_body_still_maps_to_its_status_class() -> None:
    gateway = FakeGateway()
    page = httpx.Response(502, text="<html>Bad Gateway</html>", headers={"Content-Type": "text/html"})
    gateway.fail("GET", "/api/v1/sandboxes", page)
    async with make_client(gateway) as client:
        with pytest.raises(sandcell.InternalServerError) as caught:
            await client.sessions.list()
    assert caught.value.code is None
    assert "Bad Gateway" in caught.value.message


@pytest.mark.anyio
async def test_an_unreachable_gateway_raises_connection_error_saying_how_to_start_one() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    async with sandcell.AsyncClient(base_url=BASE_URL, transport=httpx.MockTransport(refuse)) as client:
        with pytest.raises(sandcell.APIConnectionError) as caught:
            await client.health()
    assert type(caught.value) is sandcell.APIConnectionError
    assert caught.value.url == BASE_URL
    assert BASE_URL in str(caught.value) and "sandcell serve" in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


@pytest.mark.anyio
async def test_a_slow_gateway_raises_api_timeout_error() -> None:
    def stall(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with sandcell.AsyncClient(base_url=BASE_URL, transport=httpx.MockTransport(stall)) as client:
        with pytest.raises(sandcell.APITimeoutError) as caught:
            await client.sessions.list()
    assert isinstance(caught.value, sandcell.APIConnectionError)
    assert "timeout" in str(caught.value)


@pytest.mark.anyio
async def test_requests_use_the_client_timeout() -> None:
    gateway = FakeGateway()
    timeout = sandcell.Timeout(connect=1, read=2, write=3)
    async with make_client(gateway, timeout=timeout) as client:
        await client.sessions.list()
    assert client.timeout == timeout
    assert gateway.requests[0].extensions["timeout"] == {"connect": 1, "read": 2, "write": 3, "pool": 1}


def test_repr_shows_the_url_but_never_the_token() -> None:
    client = sandcell.AsyncClient(base_url=BASE_URL, token="s3cret", transport=FakeGateway().transport)
    assert repr(client) == f"AsyncClient(base_url='{BASE_URL}')"
    assert "s3cret" not in repr(client)
