"""``/api/v1/sandboxes/{id}/commands``: real gateway, real sandboxes, real agents, bad input.

A gateway of its own, with the agent on, a small output cap (so a flood is quick) and a tenant
whose execute rate is nearly spent (for 429).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sandcell_gateway.tenants import hash_token

from .conftest import Gateway, wait_for

pytestmark = pytest.mark.docker

CAP = 20_000
SLOW_TOKEN = "slow-tenant-token"
CONFIG = f"""
[gateway]
gateway_id = "{{gateway_id}}"
max_output_bytes = {CAP}

[templates.python]
min_ready = 1
max_total = 4

[tenants.slow]
token_sha256 = "{hash_token(SLOW_TOKEN)}"
execute_rate = 0.001
execute_burst = 3

[plugins]
enabled = false
"""
Events = list[dict[str, Any]]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with Gateway(tmp_path_factory.mktemp("commands"), CONFIG) as gw:
        gw.wait_ready()
        yield gw
    assert gw.containers() == [], gw.log()


@pytest.fixture
def http(gateway: Gateway) -> Iterator[httpx.Client]:
    with gateway.http() as client:
        yield client


@pytest.fixture
def sandbox(http: httpx.Client) -> Iterator[str]:
    sandbox_id = str(http.post("/api/v1/sandboxes", json={"env": {"FROM_SANDBOX": "s"}}).json()["id"])
    yield sandbox_id
    http.delete(f"/api/v1/sandboxes/{sandbox_id}")


def commands(sandbox: str, what: str = "") -> str:
    return f"/api/v1/sandboxes/{sandbox}/commands{what}"


def run(http: httpx.Client, sandbox: str, **body: Any) -> Events:
    reply = http.post(commands(sandbox), json=body)
    assert reply.status_code == 200, reply.text
    assert reply.headers["Content-Type"] == "application/x-ndjson"
    return [json.loads(line) for line in reply.text.splitlines()]


def out(events: Events, name: str = "stdout") -> str:
    return "".join(e["content"]["text"] for e in events
                   if e["msg_type"] == "stream" and e["content"]["name"] == name)


def error(reply: httpx.Response) -> tuple[int, str]:
    return reply.status_code, str(reply.json()["error"]["code"])


def background(http: httpx.Client, sandbox: str, **body: Any) -> dict[str, Any]:
    reply = http.post(commands(sandbox), json={**body, "background": True})
    assert reply.status_code == 201, reply.text
    assert reply.headers["Location"].endswith(reply.json()["id"])
    return dict(reply.json())


def events_of(http: httpx.Client, sandbox: str, command_id: str) -> Events:
    reply = http.get(commands(sandbox, f"/{command_id}/events"))
    return [json.loads(line) for line in reply.text.splitlines()]


def test_a_command_streams_its_output_and_a_nonzero_exit_is_data(
        http: httpx.Client, sandbox: str) -> None:
    events = run(http, sandbox, command="[[ 1 == 1 ]] && echo bash; echo oops >&2; exit 3")
    assert events[0]["msg_type"] == "started" and events[0]["content"]["id"].startswith("cmd_")
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert (out(events), out(events, "stderr")) == ("bash\n", "oops\n")
    assert events[-1] == {"seq": len(events) - 1, "msg_type": "exit", "content": {"exit_code": 3}}


def test_args_cwd_and_env_over_the_sandbox_s(http: httpx.Client, sandbox: str) -> None:
    assert http.post(f"/api/v1/sandboxes/{sandbox}/files/mkdir",
                     params={"path": "work"}).status_code == 201
    events = run(http, sandbox, args=["sh", "-c", 'echo "$(pwd) $FROM_SANDBOX $X $(id -u)"'],
                 cwd="work", env={"X": "1"})
    assert out(events) == "/home/sandbox/work s 1 1000\n"


def test_the_kernel_and_commands_share_the_files(http: httpx.Client, sandbox: str) -> None:
    run(http, sandbox, command="echo from-a-command > shared.txt")
    reply = http.post(f"/api/v1/sandboxes/{sandbox}/execute",
                      json={"code": "print(open('shared.txt').read(), end='')"})
    assert out([json.loads(line) for line in reply.text.splitlines()]) == "from-a-command\n"


@pytest.mark.parametrize(("body", "expected"), [
    ({"command": "true", "cwd": "../x"}, (400, "invalid_path")),
    ({"command": "true", "cwd": "/etc"}, (400, "invalid_path")),
    ({"command": "true", "cwd": "nowhere"}, (404, "file_not_found")),
    ({"args": ["no-such-program"]}, (404, "file_not_found")),
    ({"command": "true", "args": ["true"]}, (400, "invalid_request")),
    ({}, (400, "invalid_request")),
    ({"args": []}, (400, "invalid_request")),
    ({"command": "echo \u0000"}, (400, "invalid_request")),
    ({"command": "true", "timeout": 0}, (400, "invalid_request")),
    ({"command": "true", "env": {"1X": "y"}}, (400, "invalid_request")),
    ({"command": "true", "stdin": "yes"}, (400, "invalid_request")),
    ({"command": "true", "shell": True}, (400, "invalid_request")),
])
def test_bad_input_is_a_clear_4xx_and_starts_nothing(http: httpx.Client, sandbox: str,
                                                     body: dict[str, Any],
                                                     expected: tuple[int, str]) -> None:
    assert error(http.post(commands(sandbox), json=body)) == expected
    assert http.get(commands(sandbox)).json() == {"commands": []}


def test_unknown_and_malformed_command_ids_are_404(http: httpx.Client, sandbox: str) -> None:
    for command_id in ["cmd_0000000000000000", "nope", "..%2F..%2Fetc"]:
        assert error(http.get(commands(sandbox, f"/{command_id}"))) == (404, "command_not_found")
        assert error(http.post(commands(sandbox, f"/{command_id}/signal"),
                               json={"signal": "KILL"})) == (404, "command_not_found")
    assert error(http.get(commands("sbx_0000000000000000"))) == (404, "not_found")


def test_a_timeout_kills_the_whole_process_group(http: httpx.Client, sandbox: str) -> None:
    events = run(http, sandbox, command="sleep 600 & echo $!; sleep 600", timeout=1)
    assert [e["msg_type"] for e in events[-2:]] == ["timeout", "exit"]
    assert events[-1]["content"] == {"exit_code": -9}
    child = out(events).strip()

    def child_gone() -> bool:  # kill -0 fails once the child is gone (tini reaps it)
        return run(http, sandbox, command=f"kill -0 {child}")[-1]["content"]["exit_code"] != 0
    wait_for(child_gone, 10, "the backgrounded child to die with its group")


def test_output_past_the_cap_is_cut_with_a_marker(http: httpx.Client, sandbox: str) -> None:
    events = run(http, sandbox, command="head -c 300000 /dev/zero | tr '\\0' x")
    assert out(events) == "x" * CAP
    assert out(events, "stderr").startswith(f"\n[Sandcell: output truncated after {CAP} bytes;")
    assert events[-1]["content"] == {"exit_code": 0}  # the command ran on to its end


def test_background_stdin_list_describe_and_events(http: httpx.Client, sandbox: str) -> None:
    started = background(http, sandbox, command="read answer; echo got $answer", stdin=True)
    assert started["state"] == "running" and started["exit_code"] is None
    assert [c["id"] for c in http.get(commands(sandbox)).json()["commands"]] == [started["id"]]
    stdin = http.post(commands(sandbox, f"/{started['id']}/stdin"), json={"data": "y\n"})
    assert stdin.status_code == 204, stdin.text
    events = events_of(http, sandbox, started["id"])
    assert out(events) == "got y\n" and events[-1]["content"] == {"exit_code": 0}
    assert out(events_of(http, sandbox, started["id"])) == "got y\n"  # replayed, again
    described = http.get(commands(sandbox, f"/{started['id']}")).json()
    assert (described["state"], described["exit_code"]) == ("finished", 0)
    assert described["finished_at"] is not None
    assert error(http.post(commands(sandbox, f"/{started['id']}/stdin"), json={"data": "x"})) \
        == (409, "command_finished")


def test_stdin_without_a_pipe_and_bad_signals(http: httpx.Client, sandbox: str) -> None:
    started = background(http, sandbox, command="sleep 600")
    path = commands(sandbox, f"/{started['id']}")
    assert error(http.post(f"{path}/stdin", json={"data": "x"})) == (409, "stdin_closed")
    for bad in ["SIGNOPE", 4242, ""]:
        assert error(http.post(f"{path}/signal", json={"signal": bad})) == (400, "invalid_signal")
    assert error(http.post(f"{path}/signal", json={})) == (400, "invalid_request")
    assert http.post(f"{path}/signal", json={"signal": "SIGTERM"}).status_code == 204
    assert events_of(http, sandbox, started["id"])[-1]["content"] == {"exit_code": -15}


def test_a_client_leaving_a_foreground_command_kills_it(gateway: Gateway, sandbox: str) -> None:
    with gateway.http() as client:
        with client.stream("POST", commands(sandbox), json={"command": "sleep 600"}) as reply:
            first = json.loads(next(reply.iter_lines()))
    command_id = first["content"]["id"]
    with gateway.http() as client:
        def finished() -> dict[str, Any] | None:
            described = dict(client.get(commands(sandbox, f"/{command_id}")).json())
            return described if described["state"] == "finished" else None
        wait_for(finished, 15, "the abandoned command to be killed")
        assert events_of(client, sandbox, command_id)[-1]["content"]["code"] == "client_left"


def test_deleting_or_restarting_the_sandbox_kills_its_commands(http: httpx.Client) -> None:
    sandbox = str(http.post("/api/v1/sandboxes", json={}).json()["id"])
    started = background(http, sandbox, command="sleep 600")
    with http.stream("GET", commands(sandbox, f"/{started['id']}/events")) as reply:
        lines = reply.iter_lines()
        assert json.loads(next(lines))["msg_type"] == "started"
        assert http.post(f"/api/v1/sandboxes/{sandbox}/restart").status_code == 200
        last = [json.loads(line) for line in lines][-1]
    assert last["msg_type"] == "gateway_error" and last["content"]["code"] == "sandbox_closed"
    assert http.get(commands(sandbox)).json() == {"commands": []}  # the fresh container's
    again = background(http, sandbox, command="sleep 600")
    http.delete(f"/api/v1/sandboxes/{sandbox}")
    assert error(http.get(commands(sandbox, f"/{again['id']}"))) == (404, "not_found")


def test_commands_are_in_the_exported_notebook(http: httpx.Client, sandbox: str) -> None:
    run(http, sandbox, command="echo hi; exit 4")
    run(http, sandbox, args=["echo", "two words"])
    cells = http.get(f"/api/v1/sandboxes/{sandbox}/notebook").json()["cells"]
    assert [c["source"] for c in cells] == ["!echo hi; exit 4", "!echo 'two words'"]
    assert cells[0]["outputs"] == [{"output_type": "stream", "name": "stdout", "text": "hi\n"}]
    assert (cells[0]["metadata"]["sandcell"]["status"],
            cells[0]["metadata"]["sandcell"]["exit_code"]) == ("error", 4)


def test_files_and_commands_spend_the_tenant_s_execute_rate(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.url, timeout=60,
                      headers={"Authorization": f"Bearer {SLOW_TOKEN}"}) as slow:
        sandbox = slow.post("/api/v1/sandboxes", json={}).json()["id"]
        try:
            assert slow.put(f"/api/v1/sandboxes/{sandbox}/files", params={"path": "a"},
                            content=b"a").status_code == 200
            assert slow.get(f"/api/v1/sandboxes/{sandbox}/files/stat",
                            params={"path": "a"}).status_code == 200
            assert slow.post(commands(sandbox), json={"command": "true"}).status_code == 200
            refused = slow.post(commands(sandbox), json={"command": "true"})
            assert error(refused) == (429, "rate_limited") and "Retry-After" in refused.headers
            assert error(slow.get(f"/api/v1/sandboxes/{sandbox}/files",
                                  params={"path": "a"})) == (429, "rate_limited")
            assert slow.get(commands(sandbox)).json()["commands"][0]["command"] == "true"
        finally:
            slow.delete(f"/api/v1/sandboxes/{sandbox}")


def test_a_killed_agent_ends_its_commands_and_the_sandbox(http: httpx.Client) -> None:
    sandbox = str(http.post("/api/v1/sandboxes", json={}).json()["id"])
    try:
        running = background(http, sandbox, command="sleep 600")
        # A command's parent is the agent: this one kills it, once its start was reported
        # (killed before, the agent never says it started: the POST is then a 409).
        killer = "while [ ! -e go ]; do sleep 0.01; done; kill -9 $PPID; sleep 600"
        with http.stream("POST", commands(sandbox), json={"command": killer}) as stream:
            lines = stream.iter_lines()
            assert json.loads(next(lines))["msg_type"] == "started"
            go = http.put(f"/api/v1/sandboxes/{sandbox}/files", params={"path": "go"},
                          content=b"")
            # the agent may die between making "go" and answering the write that made it
            assert go.status_code == 200 or error(go) == (409, "kernel_died"), go.text
            last = json.loads(list(lines)[-1])
        assert last["msg_type"] == "gateway_error" and last["content"]["code"] == "kernel_died"
        assert events_of(http, sandbox, running["id"])[-1]["content"]["code"] == "kernel_died"

        def dead() -> bool:
            return bool(http.get(f"/api/v1/sandboxes/{sandbox}").json()["state"] == "dead")
        wait_for(dead, 30, "the sandbox to be marked dead")
        refused = http.post(commands(sandbox), json={"command": "true"})
        assert error(refused) == (409, "kernel_died")
        assert "its sandbox agent stopped" in refused.json()["error"]["message"]
    finally:
        http.delete(f"/api/v1/sandboxes/{sandbox}")
