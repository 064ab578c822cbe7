"""Bad input on every route of the real gateway: a 4xx JSON error, and nothing else changes.

The route table comes from the app's own route lists, so a new route cannot escape the sweep:
``test_every_route_is_swept`` fails until its path parameter and body handling are declared
here. After every request the gateway must still be alive, hold the same sandboxes, Jupyter
sessions and containers, and a bystander sandbox must still answer.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import tornado.web
import tornado.websocket

from sandcell_gateway import handlers, jupyter_api
from sandcell_gateway.wire import kernel_id_of
from sandcell_gateway.jupyter_channels import KernelChannelsHandler
from sandcell_gateway.plugins import handlers as plugin_handlers

from .conftest import Gateway, wait_for
from .test_jupyter_api import request, run, websocket, ws_url

pytestmark = pytest.mark.docker

ROUTES = [*handlers.ROUTES, *plugin_handlers.ROUTES, *jupyter_api.ROUTES]
PARAM = r"([^/]+)"
METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")
# What a route's path parameter names, by the route's prefix (the fixture fills in real ones).
TARGETS = {"/api/v1/sandboxes/": "sandbox", "/api/kernels/": "kernel",
           "/api/kernelspecs/": "kernelspec", "/api/v1/plugins/": "plugin",
           "/api/v1/calculate/": "operation", "/api/sessions/": "session"}
BAD_IDS = {
    "traversal": "..%2F..%2Fetc%2Fpasswd",
    "dot-dot": "%2e%2e",
    "NUL": "sbx_%00",
    "long": "sbx_" + "a" * 4000,
    "unicode": "sbx_\u2603\u00e9",
    "invalid UTF-8": "%ff%fe",
    "unknown": "sbx_0000000000000000",
}
# Every handler that reads a body, with bodies it must refuse (besides the common ones).
BODIES: dict[type[tornado.web.RequestHandler], list[Any]] = {
    handlers.SandboxesHandler: [{"template": 5}, {"timeout": "x"}, {"timeout": 1e300},
                                {"timeout": 0}, {"env": {"A": 1}}, {"env": {"A=B": "1"}},
                                {"env": {"A": "\x00"}}, {"metadata": []},
                                {"bogus": 1}, {"template": "no-such-template"}],
    handlers.ExecuteHandler: [{}, {"code": 5}, {"code": "1", "timeout": -1},
                              {"code": "1", "bogus": 1}],
    plugin_handlers.InvokeHandler: [{}, {"input": []}, {"input": {"operand1": "x", "operand2": 1}},
                                    {"input": {"operand1": 1, "operand2": 2}, "bogus": 1}],
    plugin_handlers.CalculateHandler: [{"operand1": "x", "operand2": 1}, {"operand1": 1},
                                       {"operand1": 1, "operand2": 2, "bogus": 1}],
    # Jupyter routes ignore unknown fields, as Jupyter Server does; wrong types are refused.
    jupyter_api.KernelsHandler: [{"name": 5}, {"name": "no-such-kernelspec"}, {"env": []}],
    jupyter_api.SessionsHandler: [{"kernel": []}, {"kernel": {"id": 5}}, {"path": 5},
                                  {"kernel": {"id": "sbx-0000-0000-0000-0000"}},
                                  {"notebook": "x"}],
    jupyter_api.SessionHandler: [{"kernel": "x"}, {"name": 1}, {"kernel": {"id": "nope"}},
                                 {"kernel": {"name": "no-such-kernelspec"}}],
}
COMMON_BODIES = [b"{", b"[1, 2]", b'"text"', b"\xff\xfe", b'{"timeout": NaN}',
                 b"[" * 100_000]
# POST routes that take no body: they must act on nothing but the id (and refuse a huge body).
NO_BODY = {handlers.InterruptHandler, handlers.RestartHandler,
           jupyter_api.KernelInterruptHandler, jupyter_api.KernelRestartHandler}


def methods(handler: type[tornado.web.RequestHandler]) -> list[str]:
    base = tornado.web.RequestHandler
    return [m for m in METHODS if getattr(handler, m.lower()) is not getattr(base, m.lower())]


def target(pattern: str) -> str | None:
    if PARAM not in pattern:
        return None
    return next(name for prefix, name in TARGETS.items() if pattern.startswith(prefix))


def with_id(pattern: str, value: str) -> str:
    """The path a route pattern matches, with ``value`` as its parameter (``\\.`` is a dot)."""
    return pattern.replace(PARAM, value).replace("\\.", ".")


def path_of(pattern: str, world: dict[str, str]) -> str:
    """The route's path, with a real id in its parameter (if it has one)."""
    return with_id(pattern, world[target(pattern) or ""] if PARAM in pattern else "")


ROUTE_METHODS = [(p, h, m) for p, h in ROUTES for m in methods(h)]
PARAM_ROUTES = [(p, h, m) for p, h, m in ROUTE_METHODS if PARAM in p]
BODY_ROUTES = [(p, h, m) for p, h, m in ROUTE_METHODS if h in BODIES and m in ("POST", "PATCH")]


def test_every_route_is_swept() -> None:
    for pattern, handler in ROUTES:
        assert pattern.count(PARAM) <= 1, pattern
        if PARAM in pattern:
            assert target(pattern), f"add {pattern}'s parameter to TARGETS"
        for method in set(methods(handler)) & {"POST", "PATCH", "PUT"}:
            assert handler in BODIES or handler in NO_BODY, \
                f"{method} {pattern}: add its bad bodies to BODIES (or it to NO_BODY)"


@pytest.fixture(scope="module")
def world(gateway: Gateway) -> Iterator[dict[str, str]]:
    """A bystander sandbox with a Jupyter session on it; the real ids every route accepts."""
    with gateway.http() as http:
        sandbox = http.post("/api/v1/sandboxes", json={}).json()["id"]
        kernel = kernel_id_of(sandbox)
        http.post(f"/api/v1/sandboxes/{sandbox}/execute", json={"code": "canary = 'alive'"})
        session = http.post("/api/sessions", json={"path": "sweep.ipynb", "type": "notebook",
                                                   "kernel": {"id": kernel}}).json()["id"]
        gateway.wait_ready()
        wait_for(lambda: _pools_settled(gateway), 60, "the pools to settle")
        try:
            yield {"sandbox": sandbox, "kernel": kernel, "session": session,
                   "kernelspec": "python", "plugin": "subtract_numbers", "operation": "subtract"}
        finally:
            http.delete(f"/api/sessions/{session}")  # deletes its kernel, the bystander


def _pools_settled(gateway: Gateway) -> bool:
    health = gateway.health()
    pools = [*health["pools"].values(), *health["plugins"].values()]
    return all(p["starting"] == 0 and p["ready"] >= p["min_ready"] for p in pools)


def snapshot(gateway: Gateway, http: httpx.Client) -> dict[str, Any]:
    """The tenant's sandboxes, sessions, and the containers serving those sandboxes (the warm
    pools' own containers may come and go meanwhile: an adaptive pool trims its ready set as
    the claim rate decays, and idle plugin workers age out; `accounted` checks those)."""
    sandboxes = sorted(s["id"] for s in http.get("/api/v1/sandboxes").json()["sandboxes"])
    return {"sandboxes": sandboxes,
            "sessions": sorted(s["id"] for s in http.get("/api/sessions").json()),
            "containers": sorted(c["Id"] for c in gateway.containers()
                                 if c["Labels"].get("org.sandcell.sandbox") in sandboxes)}


def accounted(gateway: Gateway) -> bool:
    """No container beyond those the pools count (ready, starting, claimed, idle workers):
    a refused request started none that stayed."""
    health = gateway.health()
    pools = [*health["pools"].values(), *health["plugins"].values()]
    counted = sum(p["ready"] + p["starting"] + p["claimed"] + p.get("idle", 0) for p in pools)
    return len(gateway.containers()) <= counted


@pytest.fixture
def unchanged(gateway: Gateway, world: dict[str, str]) -> Iterator[httpx.Client]:
    """Asserts, after the test, that nothing but the refused request happened."""
    with gateway.http() as http:
        before = snapshot(gateway, http)
        yield http
        assert gateway.process is not None and gateway.process.poll() is None, gateway.log()
        assert snapshot(gateway, http) == before
        # a removal still queued (reaper.py) is a container no pool counts any more
        wait_for(lambda: accounted(gateway), 30, "every container to be one a pool counts")
        lines = http.post(f"/api/v1/sandboxes/{world['sandbox']}/execute",
                          json={"code": "canary"}).text.splitlines()
        assert any("'alive'" in line for line in lines), lines


def assert_json_error(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if statuses:
        assert response.status_code in statuses, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    error = response.json()["error"]
    assert error["code"] and error["message"] and error["request_id"], error
    return dict(error)


@pytest.mark.parametrize("bad", sorted(BAD_IDS))
@pytest.mark.parametrize(("pattern", "handler", "method"), PARAM_ROUTES,
                         ids=[f"{m} {p}" for p, _, m in PARAM_ROUTES])
def test_bad_ids_are_refused(unchanged: httpx.Client, pattern: str, handler: Any, method: str,
                             bad: str) -> None:
    body = b'{"code": "1", "input": {}, "operand1": 1, "operand2": 2}' \
        if method in ("POST", "PATCH") else None
    response = unchanged.request(method, with_id(pattern, BAD_IDS[bad]), content=body)
    assert_json_error(response, 400, 404)


@pytest.mark.parametrize(("pattern", "handler", "method"), BODY_ROUTES,
                         ids=[f"{m} {p}" for p, _, m in BODY_ROUTES])
def test_bad_bodies_are_refused(unchanged: httpx.Client, world: dict[str, str], pattern: str,
                                handler: Any, method: str) -> None:
    path = path_of(pattern, world)
    bodies = [*COMMON_BODIES, *(json.dumps(b).encode() for b in BODIES[handler])]
    for body in bodies:
        response = unchanged.request(method, path, content=body)
        assert_json_error(response, 400, 404)


@pytest.mark.parametrize(("pattern", "handler", "method"), ROUTE_METHODS,
                         ids=[f"{m} {p}" for p, _, m in ROUTE_METHODS])
def test_oversized_bodies_and_missing_tokens_are_refused(
        unchanged: httpx.Client, gateway: Gateway, world: dict[str, str], pattern: str,
        handler: Any, method: str) -> None:
    path = path_of(pattern, world)
    huge = b" " * ((1 << 20) + 1)  # the fixture's max_body_size is the default, 1 MiB
    error = assert_json_error(unchanged.request(method, path, content=huge), 413, 401)
    assert error["code"] in ("body_too_large", "unauthorized")
    if not handler.public:
        anonymous = httpx.request(method, f"{gateway.url}{path}", content=b"{}", timeout=30)
        assert assert_json_error(anonymous, 401)["code"] == "unauthorized"


def test_any_body_size_gets_a_json_413(unchanged: httpx.Client) -> None:
    """Far past the HTTP server's own cap, and without a Content-Length (chunked), too."""
    far = unchanged.post("/api/v1/sandboxes", content=b" " * (16 << 20))
    assert assert_json_error(far, 413)["code"] == "body_too_large"
    chunks = (b" " * (64 << 10) for _ in range(32))  # 2 MiB, chunked transfer encoding
    chunked = unchanged.post("/api/v1/sandboxes", content=chunks)
    assert assert_json_error(chunked, 413)["code"] == "body_too_large"


@pytest.mark.parametrize(("pattern", "handler"), ROUTES, ids=[p for p, _ in ROUTES])
def test_unimplemented_methods_are_405_with_allow(unchanged: httpx.Client, world: dict[str, str],
                                                  pattern: str, handler: Any) -> None:
    path = path_of(pattern, world)
    missing = next(m for m in ("PUT", "PATCH", "DELETE", "POST") if m not in methods(handler))
    response = unchanged.request(missing, path, content=b"{}")
    assert assert_json_error(response, 405)["code"] == "method_not_allowed"
    assert set(response.headers["Allow"].split(", ")) == {*methods(handler), "OPTIONS"}


@pytest.mark.parametrize(("pattern", "handler"), ROUTES, ids=[p for p, _ in ROUTES])
def test_options_needs_no_token_and_lists_allow(unchanged: httpx.Client, gateway: Gateway,
                                                world: dict[str, str], pattern: str,
                                                handler: Any) -> None:
    """A browser's CORS preflight carries no token. This gateway has no [gateway.cors], so
    the answer has no CORS header (tests/integration/test_cors.py has a gateway with one)."""
    path = path_of(pattern, world)
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization"}
    response = httpx.options(f"{gateway.url}{path}", headers=preflight, timeout=30)
    assert response.status_code == 204, response.text
    assert set(response.headers["Allow"].split(", ")) == {*methods(handler), "OPTIONS"}
    assert not [h for h in response.headers if h.lower().startswith("access-control-")
                or h.lower() == "vary"], response.headers


def test_a_refused_request_leaves_the_connection_open(gateway: Gateway) -> None:
    """An unknown route, a wrong token and a path that is not UTF-8, then a good request,
    pipelined on one keep-alive connection: all four are answered (a server that closed after
    a refusal would reset a client already sending its next request; that failed this
    module's teardown twice)."""
    address = urllib.parse.urlsplit(gateway.url)
    pipelined = ("GET /api/v1/nothing HTTP/1.1\r\nHost: x\r\n\r\n"
                 "DELETE /api/v1/sandboxes/sbx_0123456789abcdef HTTP/1.1\r\nHost: x\r\n"
                 "Authorization: Bearer wrong\r\n\r\n"
                 f"GET /api/kernels/%ff%fe/channels HTTP/1.1\r\nHost: x\r\n"
                 f"Authorization: Bearer {gateway.token}\r\n\r\n"
                 "GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
    received = b""
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(pipelined.encode())
        while len(re.findall(rb"HTTP/1.1 \d{3}", received)) < 4:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    statuses = re.findall(rb"HTTP/1.1 (\d{3})", received)
    assert statuses == [b"404", b"401", b"400", b"200"], received


@pytest.mark.parametrize("path", ["/api/v1/nothing", "/api/v1/sandboxes/x/y/z", "/%2e%2e/etc",
                                  "/api/v1/sandboxes/%ff/execute/x"])
def test_unknown_routes_are_404(unchanged: httpx.Client, path: str) -> None:
    assert_json_error(unchanged.get(path), 404)


def test_websocket_route_without_upgrade_is_a_json_error(unchanged: httpx.Client,
                                                         world: dict[str, str]) -> None:
    response = unchanged.get(f"/api/kernels/{world['kernel']}/channels")
    assert assert_json_error(response, 400)["code"] == "websocket_required"
    assert KernelChannelsHandler in {h for _, h in ROUTES}


BAD_FRAMES: dict[str, tuple[str | bytes, bool]] = {  # name: (frame, binary)
    "not JSON": ("{nope", False),
    "JSON array": ("[1, 2]", False),
    "no header": (json.dumps({"channel": "shell", "content": {}}), False),
    "header without msg_type": (json.dumps({**request("1"), "header": {"msg_id": "x"}}), False),
    "unknown channel": (json.dumps({**request("1"), "channel": "nope"}), False),
    "iopub from a client": (json.dumps({**request("1"), "channel": "iopub"}), False),
    "unhashable channel": (json.dumps({**request("1"), "channel": ["shell"]}), False),
    "binary with bad offsets": (b"\x00\x00\x00\x03\x00\x00\x00\x40\x00\x00\x00\x08", True),
    "binary, absurd offset count": (b"\xff\xff\xff\xff\x00", True),
    "nested past the recursion limit": ("[" * 100_000, False),
}


@pytest.mark.anyio
async def test_bad_websocket_frames_are_ignored_and_the_kernel_keeps_working(
        gateway: Gateway, world: dict[str, str]) -> None:
    """As Jupyter Server does: a frame it cannot route is logged and dropped, the socket
    stays open. A frame over ``websocket_max_message_size`` closes only its socket (1009)."""
    url = ws_url(gateway, world["kernel"])
    async with websocket(url) as other, websocket(url) as ws:
        for name, (frame, binary) in BAD_FRAMES.items():
            await ws.write_message(frame, binary=binary)
            stdout, reply = await run(ws, "print(6 * 7)")
            assert (stdout, reply["content"]["status"]) == ("42\n", "ok"), name
        # Far over the fixture's limit (2 MiB), and more than the sockets buffer: the gateway
        # judges the frame by its header and closes while the client is still sending, so
        # the 1009 reaches it only through a lingering close (without one: 8 runs in 10
        # closed with no code). The write may then fail; the close is the answer.
        sending = asyncio.ensure_future(ws.write_message(b"x" * (64 << 20), binary=True))
        async with asyncio.timeout(30):
            while await ws.read_message() is not None:
                pass
        assert ws.close_code == 1009
        await asyncio.wait([sending])
        assert sending.exception() is None or isinstance(sending.exception(),
                                                         tornado.websocket.WebSocketClosedError)
        stdout, _ = await run(other, "print(canary)")  # the other socket never noticed
        assert stdout == "alive\n"
    async with websocket(url) as fresh:
        assert (await run(fresh, "print(1 + 1)"))[0] == "2\n"
