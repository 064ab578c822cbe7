"""CORS with a real browser: headless Chromium (Debian's) calls a real gateway from a page on
another origin.

Two pages are served by a small HTTP server on 127.0.0.1, each on a port of its own, so each is
an origin of its own, neither the gateway's. The gateway's ``[gateway.cors]`` allows the first.
Every call sends ``Authorization: Bearer``, so the browser sends a preflight first (without a
token); from the allowed page the calls succeed, from the other one the browser blocks them
and ``fetch()`` rejects with a TypeError. The policy's own rules are unit-tested in
tests/gateway/test_cors.py.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from sandcell_gateway import handlers, jupyter_api
from sandcell_gateway.imagebuild import ensure_images
from sandcell_gateway.wire import kernel_id_of
from sandcell_gateway.plugins import handlers as plugin_handlers
from sandcell_gateway.testing import GatewayProcess, wait_for

from .test_bad_input import methods, with_id

pytestmark = pytest.mark.docker

ROUTES = [*handlers.ROUTES, *plugin_handlers.ROUTES, *jupyter_api.ROUTES]
SUBTRACT = Path(__file__).resolve().parents[2] / "plugins" / "subtract_numbers"
CHROMIUM = "/usr/bin/chromium"  # Debian's; playwright's own browsers cannot be downloaded here
# The app's one helper: fetch, and hand back what a page can see of the answer (a CORS answer
# shows only the safelisted headers and those the gateway exposes), or the error fetch raised.
PAGE = b"""<!doctype html><title>a browser app</title><script>
async function call(url, init) {
  try {
    const response = await fetch(url, init);
    return {status: response.status, text: await response.text(),
            headers: Object.fromEntries(response.headers.entries())};
  } catch (error) {
    return {error: error.name, message: error.message};
  }
}
</script>"""
CONFIG = """
[gateway]
gateway_id = "{gateway_id}"
sandbox_ttl = 600
claim_timeout = 60

[gateway.cors]
allow_origin = ["%(allowed)s"]

[templates.python]
min_ready = 1
max_total = 2

[tenants.default]
max_sandboxes = 1          # so a second claim is a 429, which the page must be able to read

[plugins]
dir = "%(no_plugins)s"
paths = ["%(subtract)s"]
min_ready = 1
max_total = 1
"""


class _PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest shows the test's own output."""


@pytest.fixture(scope="module")
def origins() -> Iterator[tuple[str, str]]:
    """Two page servers: the allowed origin and another one."""
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler) for _ in range(2)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        allowed, other = (f"http://127.0.0.1:{s.server_address[1]}" for s in servers)
        yield allowed, other
    finally:
        for server, thread in zip(servers, threads):
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory,
            origins: tuple[str, str]) -> Iterator[GatewayProcess]:
    ensure_images(["python", "plugin-python"])
    workdir = tmp_path_factory.mktemp("cors-gateway")
    (workdir / "no-plugins").mkdir()
    config = CONFIG % {"allowed": origins[0], "no_plugins": workdir / "no-plugins",
                       "subtract": SUBTRACT}
    gw = GatewayProcess(workdir, config)
    try:
        gw.start()
        gw.wait_ready()
        wait_for(lambda: gw.health()["plugins"]["subtract_numbers"]["ready"] >= 1, 120,
                 "a subtract_numbers worker")
        yield gw
    finally:
        if gw.process is not None:
            gw.stop()
        leftovers = gw.containers()
        assert leftovers == [], f"gateway left containers behind: {leftovers}\n{gw.log()}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser: Browser, origin: str) -> Page:
    page = browser.new_page()
    page.goto(f"{origin}/app.html")
    return page


def call(page: Page, url: str, method: str = "GET", token: str | None = None,
         body: Any = None) -> dict[str, Any]:
    """``fetch()`` from the page; a token header makes the browser send a preflight first."""
    init: dict[str, Any] = {"method": method, "headers": {}}
    if token is not None:
        init["headers"]["Authorization"] = f"Bearer {token}"
    if body is not None:
        init["headers"]["Content-Type"] = "application/json"
        init["body"] = json.dumps(body)
    return dict(page.evaluate("([url, init]) => call(url, init)", [url, init]))


def answer(page: Page, url: str, method: str = "GET", token: str | None = None,
           body: Any = None) -> dict[str, Any]:
    """:func:`call`, which the browser must let through."""
    result = call(page, url, method, token, body)
    assert "error" not in result, f"the browser blocked {method} {url}: {result}"
    return result


def sandboxes(gateway: GatewayProcess) -> list[str]:
    with gateway.http() as http:
        return [s["id"] for s in http.get("/api/v1/sandboxes").json()["sandboxes"]]


def test_the_allowed_page_claims_runs_code_and_deletes_a_sandbox(
        gateway: GatewayProcess, browser: Browser, origins: tuple[str, str]) -> None:
    page = open_page(browser, origins[0])
    try:
        listed = answer(page, f"{gateway.url}/api/v1/sandboxes", token=gateway.token)
        assert listed["status"] == 200 and json.loads(listed["text"]) == {"sandboxes": []}, listed
        created = answer(page, f"{gateway.url}/api/v1/sandboxes", "POST", gateway.token, {})
        assert created["status"] == 201, created
        sandbox = json.loads(created["text"])["id"]
        # exposed headers: the page can read them
        assert created["headers"]["location"] == f"/api/v1/sandboxes/{sandbox}"
        assert created["headers"]["x-request-id"]
        ran = answer(page, f"{gateway.url}/api/v1/sandboxes/{sandbox}/execute", "POST",
                   gateway.token, {"code": "print(6 * 7)"})
        events = [json.loads(line) for line in ran["text"].splitlines()]
        assert {"name": "stdout", "text": "42\n"} in [e["content"] for e in events], ran
        kernels = answer(page, f"{gateway.url}/api/kernels", token=gateway.token)
        assert [k["id"] for k in json.loads(kernels["text"])] == [kernel_id_of(sandbox)]
        deleted = answer(page, f"{gateway.url}/api/v1/sandboxes/{sandbox}", "DELETE",
                       gateway.token)
        assert deleted["status"] == 204, deleted
        assert sandboxes(gateway) == []
    finally:
        page.close()
    # each call above was preflighted (the token header is not CORS-safelisted)
    assert "204 OPTIONS /api/v1/sandboxes " in gateway.log()


def test_the_allowed_page_calls_the_calculator(gateway: GatewayProcess, browser: Browser,
                                               origins: tuple[str, str]) -> None:
    page = open_page(browser, origins[0])
    try:
        result = answer(page, f"{gateway.url}/api/v1/calculate/subtract", "POST", gateway.token,
                        {"operand1": 10, "operand2": 4})
    finally:
        page.close()
    assert result["status"] == 200, result
    assert json.loads(result["text"])["result"] == 6


def test_the_allowed_page_can_read_the_gateways_errors(
        gateway: GatewayProcess, browser: Browser, origins: tuple[str, str]) -> None:
    """401, 404 and 429 reach the page as JSON it can read (with Retry-After), not as an
    opaque network error."""
    page = open_page(browser, origins[0])
    with gateway.http() as http:
        held = http.post("/api/v1/sandboxes", json={}).json()["id"]  # the tenant's only one
        try:
            wrong = answer(page, f"{gateway.url}/api/v1/sandboxes", token="wrong")
            missing = answer(page, f"{gateway.url}/api/v1/sandboxes/sbx_0000000000000000",
                           token=gateway.token)
            limited = answer(page, f"{gateway.url}/api/v1/sandboxes", "POST", gateway.token, {})
        finally:
            http.delete(f"/api/v1/sandboxes/{held}")
            page.close()
    codes = {r["status"]: json.loads(r["text"])["error"]["code"] for r in (wrong, missing, limited)}
    assert codes == {401: "unauthorized", 404: "not_found", 429: "tenant_sandbox_limit"}
    assert int(limited["headers"]["retry-after"]) >= 1


def test_the_browser_blocks_another_origin(gateway: GatewayProcess, browser: Browser,
                                           origins: tuple[str, str]) -> None:
    """The preflight gets no CORS header, so the browser never sends the request: no sandbox
    is claimed. A request without a preflight is sent, but the page cannot read the answer."""
    page = open_page(browser, origins[1])
    try:
        listed = call(page, f"{gateway.url}/api/v1/sandboxes", token=gateway.token)
        created = call(page, f"{gateway.url}/api/v1/sandboxes", "POST", gateway.token, {})
        kernels = call(page, f"{gateway.url}/api/kernels", "POST", gateway.token, {})
        health = call(page, f"{gateway.url}/api/v1/health")  # a simple request: no preflight
    finally:
        page.close()
    for blocked in (listed, created, kernels, health):
        assert blocked.get("error") == "TypeError", blocked
    assert sandboxes(gateway) == []


def test_every_route_answers_a_preflight_without_a_token(gateway: GatewayProcess,
                                                         origins: tuple[str, str]) -> None:
    """At the HTTP level, for every route (REST, Jupyter, plugins, calculator): the allowed
    origin gets the CORS headers, another origin only ``Vary: Origin``."""
    allowed, other = origins
    for pattern, handler in ROUTES:
        path = with_id(pattern, "sbx_0000000000000000")
        allows = {*methods(handler), "OPTIONS"}
        for origin in (allowed, other):
            answer = httpx.options(f"{gateway.url}{path}", timeout=30, headers={
                "Origin": origin, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type"})
            assert answer.status_code == 204, (path, answer.text)
            assert set(answer.headers["Allow"].split(", ")) == allows, path
            assert answer.headers["Vary"] == "Origin"
            cors = {k: v for k, v in answer.headers.items() if k.startswith("access-control-")}
            if origin == other:
                assert cors == {}, (path, cors)
                continue
            assert cors.pop("access-control-allow-origin") == allowed
            assert set(cors.pop("access-control-allow-methods").split(", ")) == allows
            assert cors == {"access-control-allow-headers": "Authorization, Content-Type",
                            "access-control-max-age": "600", "access-control-expose-headers":
                            "Content-Disposition, Location, Retry-After, X-Request-Id"}, path


@pytest.mark.parametrize(("method", "path", "token", "status"), [
    ("GET", "/api/v1/sandboxes", None, 401),
    ("GET", "/api/kernels", "wrong", 401),
    ("GET", "/api/v1/sandboxes/sbx_0000000000000000", "good", 404),
    ("GET", "/api/v1/no-such-route", "good", 404),
    ("PUT", "/api/kernels", "good", 405),
    ("GET", "/api/swagger.json", None, 200),
])
def test_every_answer_to_the_allowed_origin_carries_cors_headers(
        gateway: GatewayProcess, origins: tuple[str, str], method: str, path: str,
        token: str | None, status: int) -> None:
    allowed, other = origins
    headers = {"Authorization": f"Bearer {gateway.token if token == 'good' else token}"} \
        if token else {}
    for origin in (allowed, other):
        answer = httpx.request(method, f"{gateway.url}{path}", timeout=30,
                               headers={**headers, "Origin": origin})
        assert answer.status_code == status, answer.text
        assert answer.headers["Vary"] == "Origin"
        if origin == other:
            assert "access-control-allow-origin" not in answer.headers
            continue
        assert answer.headers["access-control-allow-origin"] == allowed
        assert answer.headers["access-control-expose-headers"] == \
            "Content-Disposition, Location, Retry-After, X-Request-Id"
