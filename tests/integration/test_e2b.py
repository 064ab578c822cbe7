"""E2B's own SDKs, unmodified from PyPI (e2b 2.63, e2b-code-interpreter 2.11), against a real
gateway on real Docker, configured by E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY only.

Each scenario runs in a process of its own (e2b_scenarios.py) and prints what the SDK returned
or raised; the test judges that, not the process's exit status (docs/e2b.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sandcell_gateway.tenants import hash_token

from .conftest import Gateway

pytestmark = pytest.mark.docker

SCENARIOS = Path(__file__).with_name("e2b_scenarios.py")
BOB = "bob-e2b-token-0123456789"  # a second tenant, with room for one sandbox
CONFIG = f"""
[gateway]
gateway_id = "{{gateway_id}}"

[templates.python]
min_ready = 2
max_total = 6

[plugins]
enabled = false

[tenants.bob]
token_sha256 = "{hash_token(BOB)}"
max_sandboxes = 1
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with Gateway(tmp_path_factory.mktemp("e2b"), CONFIG) as gw:
        gw.wait_ready()
        yield gw
    assert gw.containers() == [], gw.log()


def run(gateway: Gateway, scenario: str, *args: str, key: str | None = None) -> dict[str, Any]:
    """The scenario's RESULT line, from a process whose only configuration is E2B's three
    variables (and no HOME of ours: the SDK writes nothing we keep)."""
    env = {**os.environ, "E2B_API_URL": f"{gateway.url}/e2b/api",
           "E2B_SANDBOX_URL": f"{gateway.url}/e2b/sbx", "E2B_API_KEY": key or gateway.token}
    done = subprocess.run([sys.executable, str(SCENARIOS), scenario, *args], env=env,
                          capture_output=True, text=True, timeout=240, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"{scenario} printed no result (exit {done.returncode}):\n{done.stderr}"
    return dict(json.loads(lines[-1][len("RESULT "):]))


def test_the_readme_snippet_runs_unchanged(gateway: Gateway) -> None:
    result = run(gateway, "snippet")
    assert (result["text"], result["read"], result["stdout"]) == ("42", "hi", "hi\n")
    with gateway.http() as http:  # the SDK's kill() removed it
        assert http.get(f"/api/v1/sandboxes/{result['id']}").status_code == 404


def test_the_snippet_runs_on_the_async_sdk(gateway: Gateway) -> None:
    result = run(gateway, "async_snippet")
    assert (result["text"], result["read"], result["stdout"]) == ("42", "hi", "hi\n")


def test_rich_results_a_matplotlib_png_and_a_dataframe_as_html(gateway: Gateway) -> None:
    result = run(gateway, "rich")
    assert result["plot"] == [["png", "text"]]
    assert result["png_head"] == "iVBORw0K"  # base64 of the PNG signature
    assert '<table border="1" class="dataframe">' in result["html"] and result["main"] is True
    assert result["error"] == ["ValueError", "bad"] and result["stdout"] == ["out\n"]
    assert result["count"] == 3


def test_errors_are_the_exceptions_e2b_users_expect(gateway: Gateway) -> None:
    result = run(gateway, "errors")
    assert result["missing_file"] == "FileNotFoundException"
    assert result["exit"] == "CommandExitException"
    assert (result["exit_code"], result["stderr"]) == (3, "oops\n")
    assert result["command_timeout"] == "TimeoutException"
    assert result["code_timeout"] == "TimeoutException"
    assert result["after_timeout"] == "2"  # the interrupted kernel goes on serving


def test_kill_and_kill_twice(gateway: Gateway) -> None:
    result = run(gateway, "kill")
    assert (result["first"], result["second"], result["by_id"]) == (True, False, False)
    assert result["running"] is False and result["info"] == "SandboxNotFoundException"


def test_another_tenants_sandbox_is_not_found(gateway: Gateway) -> None:
    mine = run(gateway, "create", "base")
    assert mine["template"] == "python"  # E2B's base is Sandcell's python ([gateway.e2b])
    try:
        theirs = run(gateway, "other_tenant", mine["id"], key=BOB)
        assert theirs == {"connect": "SandboxNotFoundException",
                          "info": "SandboxNotFoundException", "kill": False, "listed": []}
        health = httpx.get(f"{gateway.url}/e2b/sbx/health",
                           headers={"E2b-Sandbox-Id": mine["id"], "X-Access-Token": BOB})
        assert health.status_code == 502 and "was not found" in health.json()["message"]
    finally:
        assert run(gateway, "cleanup", mine["id"]) == {"killed": True}


def test_commands_with_stdin_and_signals(gateway: Gateway) -> None:
    result = run(gateway, "stdin_and_signals")
    assert result["echoed"] == "hello\n"
    assert result["pid_listed"] and result["killed"] and result["ready"]
    assert result["exit_code"] == -1  # killed by a signal, as envd reports it
    assert result["kill_again"] is False


def test_files_timeouts_envs_and_connect(gateway: Gateway) -> None:
    result = run(gateway, "files_and_control")
    assert (result["made"], result["made_again"]) == (True, False)
    assert (result["entry_path"], result["entry_type"]) == ("/home/user/d/e/f.txt", "file")
    assert result["listed"] == ["/home/user/d/e", "/home/user/d/e/f.txt"]
    assert result["d_exists"] is False and result["g"] == "x"
    assert result["env"] == "hej" and result["code_env"] == "'hej'"
    assert result["metadata"] == {"who": "test"}
    assert 115 < result["seconds_left"] < 130  # set_timeout(120) from about now
    assert result["pwd"] == "/home/sandbox"  # the documented difference: E2B's is /home/user
    assert result["many"] == ["/home/user/m/1.txt", "/home/user/m/2.txt"]
    assert result["many_read"] == ["one", "two"]
    assert result["streamed"] == ["/home/user/s.bin", [0, 1]]
    assert result["pty"] == "SandboxException"  # unimplemented: no PTY (docs/e2b.md)


def _e2b(gateway: Gateway, method: str, path: str, key: str | None = "",
         **kwargs: Any) -> httpx.Response:
    headers = {} if key is None else {"X-API-KEY": key or gateway.token}
    return httpx.request(method, f"{gateway.url}/e2b/api{path}", headers=headers, **kwargs)


@pytest.mark.parametrize(("body", "word"), [
    ({}, "templateID"),
    ({"templateID": "base", "timeout": "long"}, "timeout"),
    ({"templateID": "base", "network": {"denyOut": ["0.0.0.0/0"]}}, "network"),
    ({"templateID": "base", "autoPause": True}, "autoPause"),
    ({"templateID": "base", "volumeMounts": [{"name": "v", "path": "/v"}]}, "volumeMounts"),
    ({"templateID": "no-such-template"}, "template"),
])
def test_bad_creates_are_e2b_shaped_400s(gateway: Gateway, body: dict[str, Any],
                                         word: str) -> None:
    response = _e2b(gateway, "POST", "/v2/sandboxes", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == 400 and word in response.json()["message"]


def test_no_key_is_401_and_the_tenants_cap_is_429(gateway: Gateway) -> None:
    assert _e2b(gateway, "GET", "/v2/sandboxes", key=None).status_code == 401
    assert _e2b(gateway, "GET", "/v2/sandboxes", key="wrong").json()["code"] == 401
    first = _e2b(gateway, "POST", "/v2/sandboxes", key=BOB, json={"templateID": "base"})
    assert first.status_code == 201, first.text
    try:
        second = _e2b(gateway, "POST", "/v2/sandboxes", key=BOB, json={"templateID": "base"})
        assert second.status_code == 429 and second.headers["Retry-After"]
    finally:
        sandbox_id = first.json()["sandboxID"]
        assert _e2b(gateway, "DELETE", f"/sandboxes/{sandbox_id}", key=BOB).status_code == 204


def test_envd_refusals_are_connect_errors(gateway: Gateway) -> None:
    created = _e2b(gateway, "POST", "/v2/sandboxes", json={"templateID": "base"}).json()
    headers = {"E2b-Sandbox-Id": created["sandboxID"], "E2b-Sandbox-Port": "49983",
               "X-Access-Token": created["envdAccessToken"]}
    try:
        rpc = f"{gateway.url}/e2b/sbx/filesystem.Filesystem"
        unknown = httpx.post(f"{rpc}/WatchDir", headers=headers, content=b"{}")
        assert unknown.status_code == 501 and unknown.json()["code"] == "unimplemented"
        missing = httpx.post(f"{rpc}/Stat", headers=headers, json={"path": "nope"})
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
        escape = httpx.post(f"{rpc}/Stat", headers=headers, json={"path": "/etc/passwd"})
        assert escape.status_code == 400 and escape.json()["code"] == "invalid_argument"
        garbage = httpx.post(f"{rpc}/Stat", headers=headers, content=b"[")
        assert garbage.status_code == 400
        no_id = httpx.get(f"{gateway.url}/e2b/sbx/health",
                          headers={"X-Access-Token": gateway.token})
        assert no_id.status_code == 400 and "E2b-Sandbox-Id" in no_id.json()["message"]
        wrong_port = httpx.get(f"{gateway.url}/e2b/sbx/health",
                               headers={**headers, "E2b-Sandbox-Port": "8080"})
        assert wrong_port.status_code == 404
    finally:
        _e2b(gateway, "DELETE", f"/sandboxes/{created['sandboxID']}")


def test_an_unknown_e2b_route_is_an_e2b_shaped_404(gateway: Gateway) -> None:
    response = _e2b(gateway, "POST", "/sandboxes/x/pause")
    assert response.status_code == 404 and response.json()["code"] == 404
