"""The token check every handler runs in ``prepare`` (base.py), over real HTTP to a tornado app
on a loopback port: where the token may come from, which wins, and what a missing or wrong
one gets. Which tenant a token belongs to is tests/gateway/test_tenants.py."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tornado.httpserver
import tornado.testing
import tornado.web

from sandcell_gateway.base import BaseHandler, Deps
from sandcell_gateway.config import TenantConfig, load_config
from sandcell_gateway.fake_runtime import FakeRuntime
from sandcell_gateway.jupyter_service import JupyterService
from sandcell_gateway.service import SandboxService
from sandcell_gateway.store import HistoryStore
from sandcell_gateway.tenants import Tenants, hash_token

ALICE, BOB = "alice-secret", "bob-secret"
MAX_BODY = 10


class Whoami(BaseHandler):
    """Answers with the tenant ``prepare`` found, and whether Nagle is off on the socket."""

    def get(self) -> None:
        sock = self.request.connection.stream.socket  # type: ignore[union-attr]
        self.write_json({"tenant": self.tenant.name,
                         "nodelay": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)})

    def post(self) -> None:
        self.write_json({"tenant": self.tenant.name, "size": len(self.raw_body())})


class Ignores(BaseHandler):
    """Never reads its body, and counts the requests it served."""

    served = 0

    def post(self) -> None:
        type(self).served += 1
        self.write_json({})


class Public(BaseHandler):
    public = True

    def get(self) -> None:
        self.write_json({"tenant": getattr(getattr(self, "tenant", None), "name", None)})


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    configs = {name: TenantConfig(name, token_sha256=hash_token(token))
               for name, token in (("alice", ALICE), ("bob", BOB))}
    store = HistoryStore(tmp_path / "s.sqlite3")
    service = SandboxService(load_config(store_path=store.path), FakeRuntime(), store)
    deps = Deps(service, Tenants(configs, "default-secret"), JupyterService(service, store),
                max_body_size=MAX_BODY)
    app = tornado.web.Application([("/whoami", Whoami, {"deps": deps}),
                                   ("/ignores", Ignores, {"deps": deps}),
                                   ("/public", Public, {"deps": deps})])
    sock, port = tornado.testing.bind_unused_port()
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets([sock])
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            yield http
    finally:
        server.stop()
        await server.close_all_connections()


async def _tenant(client: httpx.AsyncClient, **request: Any) -> str:
    response = await client.get("/whoami", **request)
    assert response.status_code == 200, response.text
    return str(response.json()["tenant"])


@pytest.mark.anyio
@pytest.mark.parametrize("header", [f"Bearer {ALICE}", f"token {ALICE}", f"BEARER {ALICE}",
                                    f"Bearer  {ALICE}"])
async def test_the_authorization_header_names_the_tenant(client: httpx.AsyncClient,
                                                         header: str) -> None:
    """Both schemes Jupyter clients send, in any case, with stray spaces around the token."""
    assert await _tenant(client, headers={"Authorization": header}) == "alice"


@pytest.mark.anyio
async def test_the_query_token_is_for_clients_that_cannot_send_a_header(
        client: httpx.AsyncClient) -> None:
    assert await _tenant(client, params={"token": BOB}) == "bob"
    # another scheme is not a token: the query is read instead
    assert await _tenant(client, headers={"Authorization": f"Basic {ALICE}"},
                         params={"token": BOB}) == "bob"
    # a Bearer header wins over the query, so a link cannot swap the caller's tenant
    assert await _tenant(client, headers={"Authorization": f"Bearer {ALICE}"},
                         params={"token": BOB}) == "alice"


@pytest.mark.anyio
@pytest.mark.parametrize("request_", [{}, {"headers": {"Authorization": "Bearer wrong"}},
                                      {"headers": {"Authorization": "Bearer"}},
                                      {"headers": {"Authorization": f"Basic {ALICE}"}},
                                      {"params": {"token": "wrong"}},
                                      {"headers": {"Authorization": f"Bearer {hash_token(ALICE)}"}}])
async def test_a_missing_or_wrong_token_is_a_json_401(client: httpx.AsyncClient,
                                                      request_: dict[str, Any]) -> None:
    response = await client.get("/whoami", **request_)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error == {"code": "unauthorized", "request_id": response.headers["X-Request-Id"],
                     "message": "missing or wrong token: send 'Authorization: Bearer <token>' "
                                "(the gateway prints its token at start)"}
    assert ALICE not in response.text


@pytest.mark.anyio
async def test_public_routes_and_preflights_need_no_token(client: httpx.AsyncClient) -> None:
    public = await client.get("/public")
    assert public.status_code == 200 and public.json() == {"tenant": None}
    assert (await client.get("/public", params={"token": ALICE})).json() == {"tenant": "alice"}
    assert (await client.options("/whoami")).status_code == 204


@pytest.mark.anyio
async def test_the_token_is_checked_before_the_declared_body_size(
        client: httpx.AsyncClient) -> None:
    """A caller without a token learns nothing, not even the body cap; one with a token gets
    a JSON 413 for a declared body past ``max_body_size``, and exactly the cap gets through."""
    auth = {"Authorization": f"Bearer {ALICE}"}
    assert (await client.post("/whoami", content=b"x" * (MAX_BODY + 1))).status_code == 401
    too_large = await client.post("/whoami", headers=auth, content=b"x" * (MAX_BODY + 1))
    assert too_large.status_code == 413 and too_large.json()["error"]["code"] == "body_too_large"
    fits = await client.post("/whoami", headers=auth, content=b"x" * MAX_BODY)
    assert fits.status_code == 200 and fits.json() == {"tenant": "alice", "size": MAX_BODY}


@pytest.mark.anyio
async def test_a_declared_body_past_the_cap_is_refused_before_any_handler_runs(
        client: httpx.AsyncClient) -> None:
    """Also a handler that never reads its body: the declared size alone refuses it."""
    auth = {"Authorization": f"Bearer {ALICE}"}
    served = Ignores.served
    refused = await client.post("/ignores", headers=auth, content=b"x" * (MAX_BODY + 1))
    assert refused.status_code == 413 and Ignores.served == served
    assert (await client.post("/ignores", headers=auth, content=b"x")).status_code == 200
    assert Ignores.served == served + 1


@pytest.mark.anyio
async def test_nagle_is_off_on_every_authenticated_connection(client: httpx.AsyncClient) -> None:
    """DESIGN.md: Nagle's algorithm would add ~40 ms to small responses."""
    response = await client.get("/whoami", headers={"Authorization": f"Bearer {ALICE}"})
    assert response.json()["nodelay"] != 0
