"""``[gateway.e2b] enabled``: the E2B routes are served, or the gateway does not know them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import tornado.httpserver
import tornado.testing
from sandcell_gateway.app import make_app
from sandcell_gateway.base import Deps
from sandcell_gateway.config import E2BConfig, load_config
from sandcell_gateway.fake_runtime import FakeRuntime
from sandcell_gateway.jupyter_service import JupyterService
from sandcell_gateway.service import SandboxService
from sandcell_gateway.store import HistoryStore
from sandcell_gateway.tenants import Tenants

TOKEN = "the-default-token"


@asynccontextmanager
async def serving(tmp_path: Path, e2b: E2BConfig) -> AsyncIterator[httpx.AsyncClient]:
    store = HistoryStore(tmp_path / "s.sqlite3")
    service = SandboxService(load_config(store_path=store.path), FakeRuntime(), store)
    deps = Deps(service, Tenants({}, TOKEN), JupyterService(service, store), e2b=e2b)
    sock, port = tornado.testing.bind_unused_port()
    server = tornado.httpserver.HTTPServer(make_app(deps))
    server.add_sockets([sock])
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                     headers={"X-API-KEY": TOKEN}) as http:
            yield http
    finally:
        server.stop()
        await server.close_all_connections()


def is_sandcell_404(reply: httpx.Response) -> bool:
    """Sandcell's own JSON 404, not the E2B-shaped one the /e2b fallback answers."""
    return reply.status_code == 404 and reply.json()["error"]["code"] == "not_found"


@pytest.mark.anyio
async def test_on_by_default_the_e2b_control_plane_answers(tmp_path: Path) -> None:
    async with serving(tmp_path, E2BConfig()) as http:
        listed = await http.get("/e2b/api/sandboxes")
    assert (listed.status_code, listed.json()) == (200, [])


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/e2b/api/sandboxes", "/e2b/api/v2/sandboxes",
                                  "/e2b/sbx/health"])
async def test_disabled_the_e2b_routes_are_the_gateway_s_own_404(
        tmp_path: Path, path: str) -> None:
    async with serving(tmp_path, E2BConfig(enabled=False)) as http:
        assert is_sandcell_404(await http.get(path))
        assert is_sandcell_404(await http.post(path, json={"templateID": "base"}))
