"""Structured logs and request ids (ops/logs.py), over real HTTP to the gateway's own app on a
fake runtime: the X-Request-Id a client sends or gets, the same id in its error body and in
its log lines, and no token in any line."""

from __future__ import annotations

import doctest
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tornado.httpserver
import tornado.testing

from sandcell_gateway.app import make_app
from sandcell_gateway.base import Deps
from sandcell_gateway.config import TenantConfig, load_config
from sandcell_gateway.fake_runtime import FakeRuntime
from sandcell_gateway.jupyter_service import JupyterService
from sandcell_gateway.ops import logs
from sandcell_gateway.service import SandboxService
from sandcell_gateway.store import HistoryStore
from sandcell_gateway.tenants import Tenants, hash_token

ALICE = "alice-very-secret-token"
DEFAULT = "default-very-secret-token"


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Every record, as ``--log-format json`` writes it, into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(logs.RequestFilter())
    handler.setFormatter(logs.JsonFormatter())
    root, access = logging.getLogger(), logging.getLogger("tornado.access")
    root.addHandler(handler)
    level, access.level = access.level, logging.INFO
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        access.setLevel(level)


def entries(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = HistoryStore(tmp_path / "s.sqlite3")
    service = SandboxService(load_config(store_path=store.path), FakeRuntime(), store)
    tenants = Tenants({"alice": TenantConfig("alice", token_sha256=hash_token(ALICE))}, DEFAULT)
    app = make_app(Deps(service, tenants, JupyterService(service, store)))
    sock, port = tornado.testing.bind_unused_port()
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets([sock])
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            yield http
    finally:
        server.stop()
        await server.close_all_connections()


@pytest.mark.anyio
async def test_a_usable_client_request_id_is_echoed_and_names_the_log_lines(
        client: httpx.AsyncClient, log_lines: io.StringIO) -> None:
    response = await client.get("/api/v1/sandboxes", headers={
        "X-Request-Id": "trace-42", "Authorization": f"Bearer {ALICE}"})
    assert response.status_code == 200 and response.headers["X-Request-Id"] == "trace-42"
    [access] = [e for e in entries(log_lines) if e["logger"] == "tornado.access"]
    assert access["request_id"] == "trace-42" and access["tenant"] == "alice"
    assert access["status"] == 200 and access["method"] == "GET"
    assert access["path"] == "/api/v1/sandboxes" and access["level"] == "info"
    assert isinstance(access["duration"], float) and access["duration"] >= 0
    assert access["time"].endswith("Z") and "event" in access


@pytest.mark.anyio
@pytest.mark.parametrize("given", [None, "has space", "x" * 129, "{\"json\": 1}"])
async def test_otherwise_the_gateway_makes_one(client: httpx.AsyncClient, given: str | None,
                                               log_lines: io.StringIO) -> None:
    headers = {"Authorization": f"Bearer {ALICE}"} | ({"X-Request-Id": given} if given else {})
    response = await client.get("/api/v1/sandboxes", headers=headers)
    made = response.headers["X-Request-Id"]
    assert made != given and len(made) == 32 and made.isalnum()
    assert [e["request_id"] for e in entries(log_lines)] == [made]


@pytest.mark.anyio
async def test_an_error_body_and_its_log_line_carry_the_same_id_and_the_sandbox(
        client: httpx.AsyncClient, log_lines: io.StringIO) -> None:
    response = await client.get("/api/v1/sandboxes/sbx_0123456789abcdef", headers={
        "Authorization": f"Bearer {ALICE}", "X-Request-Id": "lost-1"})
    assert response.status_code == 404
    assert response.json()["error"]["request_id"] == "lost-1"
    [access] = entries(log_lines)
    assert access["level"] == "warning" and access["status"] == 404
    assert (access["request_id"], access["tenant"], access["sandbox_id"]) == \
        ("lost-1", "alice", "sbx_0123456789abcdef")


@pytest.mark.anyio
async def test_no_token_reaches_a_log_line(client: httpx.AsyncClient,
                                           log_lines: io.StringIO) -> None:
    """Header and query tokens, right and wrong (a wrong one may be a real token elsewhere)."""
    await client.get("/api/v1/sandboxes", params={"token": ALICE})
    await client.get("/api/v1/sandboxes", params={"token": "wrong-but-secret", "x": "1"})
    await client.get("/api/v1/sandboxes", headers={"Authorization": f"Bearer {DEFAULT}"})
    await client.get("/api/v1/nowhere", headers={"Authorization": "Bearer wrong-and-secret"})
    text = log_lines.getvalue()
    assert len(entries(log_lines)) == 4
    for secret in (ALICE, DEFAULT, "wrong-but-secret", "wrong-and-secret"):
        assert secret not in text
    paths = [e["path"] for e in entries(log_lines)]
    assert paths[:2] == ["/api/v1/sandboxes?token=REDACTED",
                         "/api/v1/sandboxes?token=REDACTED&x=1"]


@pytest.mark.anyio
async def test_a_failing_request_is_logged_without_its_token(
        client: httpx.AsyncClient, log_lines: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    """tornado's own line for an uncaught exception names the request, with its URI."""
    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the store broke")

    monkeypatch.setattr(SandboxService, "list", fail)
    response = await client.get("/api/v1/sandboxes", params={"token": ALICE},
                                headers={"X-Request-Id": "boom-1"})
    assert response.status_code == 500
    assert response.json()["error"]["request_id"] == "boom-1"
    failure, access = entries(log_lines)
    assert "RuntimeError: the store broke" in failure["exc"]
    assert failure["request_id"] == access["request_id"] == "boom-1"
    assert "token=REDACTED" in failure["event"] and ALICE not in log_lines.getvalue()


def test_doctests() -> None:
    assert doctest.testmod(logs).attempted > 0 and doctest.testmod(logs).failed == 0


def test_records_outside_a_request_have_empty_request_fields() -> None:
    record = logging.LogRecord("sandcell", logging.ERROR, __file__, 1, "pool %s failed",
                               ("python",), None)
    assert logs.RequestFilter().filter(record)
    entry = json.loads(logs.JsonFormatter().format(record))
    assert entry["event"] == "pool python failed" and entry["level"] == "error"
    assert entry["request_id"] is None and entry["sandbox_id"] is None
    assert entry["duration"] is None and "status" not in entry


def test_a_record_logged_with_an_exception_carries_its_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys
        record = logging.LogRecord("sandcell", logging.ERROR, __file__, 1, "failed", (),
                                   sys.exc_info())
    entry = json.loads(logs.JsonFormatter().format(record))
    assert "ValueError: boom" in entry["exc"]


def test_text_lines_name_the_request_they_were_logged_under() -> None:
    outside = logging.LogRecord("sandcell", logging.INFO, __file__, 1, "ready", (), None)
    inside = logging.LogRecord("tornado.access", logging.INFO, __file__, 1, "200 GET /", (), None)
    inside.request_id = "trace-42"
    formatter = logs.TextFormatter()
    assert formatter.format(outside).endswith(" INFO sandcell: ready")
    assert formatter.format(inside).endswith(" INFO tornado.access [trace-42]: 200 GET /")


def test_configure_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="text, json"):
        logs.configure("INFO", "yaml")
