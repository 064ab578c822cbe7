"""``/api/v1/sandboxes/{id}/files``: real gateway, real sandboxes, real agents, bad input.

A gateway of its own: a small workspace (for 507) and a small max_file_size (for 413).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from .conftest import Gateway

pytestmark = pytest.mark.docker

MAX_FILE = 4 << 20
CONFIG = f"""
[gateway]
gateway_id = "{{gateway_id}}"
max_file_size = {MAX_FILE}

[templates.python]
min_ready = 1
max_total = 4

[templates.python.limits]
workspace_size = "8m"

[templates.lean]
min_ready = 0
max_total = 1
agent = false

[plugins]
enabled = false
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with Gateway(tmp_path_factory.mktemp("files"), CONFIG) as gw:
        yield gw


@pytest.fixture
def http(gateway: Gateway) -> Iterator[httpx.Client]:
    with gateway.http() as client:
        yield client


@pytest.fixture
def sandbox(http: httpx.Client) -> Iterator[str]:
    sandbox_id = str(http.post("/api/v1/sandboxes", json={}).json()["id"])
    yield sandbox_id
    http.delete(f"/api/v1/sandboxes/{sandbox_id}")


def files(sandbox: str, what: str = "") -> str:
    return f"/api/v1/sandboxes/{sandbox}/files{what}"


def run(http: httpx.Client, sandbox: str, code: str) -> str:
    reply = http.post(f"/api/v1/sandboxes/{sandbox}/execute", json={"code": code})
    events = [json.loads(line) for line in reply.text.splitlines()]
    return "".join(e["content"].get("text", "") for e in events if e["msg_type"] == "stream")


def visible(http: httpx.Client, sandbox: str) -> str:
    """The workspace's names, less the dot-files the kernel makes (.ipython, .cache)."""
    return run(http, sandbox, "import os; print(sorted(n for n in os.listdir('.') "
                              "if not n.startswith('.')))").strip()


def error(reply: httpx.Response) -> tuple[int, str]:
    return reply.status_code, str(reply.json()["error"]["code"])


def test_write_then_read_and_the_kernel_sees_it(http: httpx.Client, sandbox: str) -> None:
    reply = http.put(files(sandbox), params={"path": "data/in.csv"}, content=b"a,b\n1,2\n")
    assert reply.status_code == 200, reply.text
    info = reply.json()
    assert (info["name"], info["path"], info["type"], info["size"]) == \
        ("in.csv", "data/in.csv", "file", 8)
    assert http.get(files(sandbox), params={"path": "data/in.csv"}).content == b"a,b\n1,2\n"
    assert run(http, sandbox, "print(open('data/in.csv').read(), end='')") == "a,b\n1,2\n"


def test_list_stat_make_dir_rename_remove(http: httpx.Client, sandbox: str) -> None:
    assert http.post(files(sandbox, "/mkdir"), params={"path": "out"}).status_code == 201
    http.put(files(sandbox), params={"path": "out/a.txt"}, content=b"x")
    listed = http.get(files(sandbox, "/list"), params={"path": "out"}).json()["files"]
    assert [(f["name"], f["type"], f["size"]) for f in listed] == [("a.txt", "file", 1)]
    assert http.get(files(sandbox, "/stat"), params={"path": "out"}).json()["type"] == "dir"
    moved = http.post(files(sandbox, "/rename"), json={"source": "out/a.txt",
                                                       "destination": "out/b.txt"})
    assert moved.json()["path"] == "out/b.txt"
    assert error(http.delete(files(sandbox), params={"path": "out"})) == \
        (409, "directory_not_empty")
    assert http.delete(files(sandbox), params={"path": "out", "recursive": "true"}
                       ).status_code == 204
    assert error(http.get(files(sandbox, "/stat"), params={"path": "out"})) == \
        (404, "file_not_found")


def test_missing_files_and_wrong_kinds(http: httpx.Client, sandbox: str) -> None:
    assert error(http.get(files(sandbox), params={"path": "nope.txt"})) == (404, "file_not_found")
    http.put(files(sandbox), params={"path": "f.txt"}, content=b"f")
    assert error(http.get(files(sandbox, "/list"), params={"path": "f.txt"}))[0] == 400
    http.post(files(sandbox, "/mkdir"), params={"path": "d"})
    assert error(http.get(files(sandbox), params={"path": "d"})) == (400, "wrong_file_type")


@pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd", "a/../../x", "bad\x00name"])
def test_paths_outside_or_malformed_are_invalid(http: httpx.Client, sandbox: str,
                                                path: str) -> None:
    assert error(http.get(files(sandbox), params={"path": path})) == (400, "invalid_path")
    assert error(http.put(files(sandbox), params={"path": path}, content=b"x")) == \
        (400, "invalid_path")


def test_a_non_utf8_path_is_invalid(http: httpx.Client, sandbox: str) -> None:
    assert error(http.get(files(sandbox) + "?path=%ff%fe")) == (400, "invalid_path")


def test_a_symlink_pointing_outside_is_invalid(http: httpx.Client, sandbox: str) -> None:
    run(http, sandbox, "import os; os.symlink('/etc', 'etc'); os.symlink('/etc/passwd', 'pw')")
    assert error(http.get(files(sandbox), params={"path": "pw"})) == (400, "invalid_path")
    assert error(http.put(files(sandbox), params={"path": "etc/x"}, content=b"x")) == \
        (400, "invalid_path")


def test_a_symlink_swapped_during_calls_never_leads_outside(http: httpx.Client,
                                                           sandbox: str) -> None:
    """A cell flips ``flip`` between a directory of the workspace and ``/conn`` (the kernel's
    keys, bind-mounted from the host) while the calls go on: each call is inside, or 400."""
    run(http, sandbox, """
import os, threading, time
os.makedirs('real', exist_ok=True)
open('real/kernel.json', 'w').write('decoy')
def flip():
    end, i = time.time() + 120, 0
    while time.time() < end and not os.path.exists('stop'):
        os.symlink(('real', '/conn')[i % 2], 'flip.new'); os.replace('flip.new', 'flip'); i += 1
threading.Thread(target=flip, daemon=True).start()
""")
    seen: set[tuple[int, str]] = set()
    try:
        for i in range(150):
            got = http.get(files(sandbox), params={"path": "flip/kernel.json"})
            assert got.status_code == 400 or got.content == b"decoy", got.content[:200]
            wrote = http.put(files(sandbox), params={"path": f"flip/sub{i % 3}/evil"},
                             content=b"evil")
            seen |= {(got.status_code, "read"), (wrote.status_code, "write")}
            for reply in (got, wrote):
                assert reply.status_code == 200 or error(reply) == (400, "invalid_path")
    finally:
        http.put(files(sandbox), params={"path": "stop"}, content=b"")
    # both outcomes happened: the swap really raced the calls
    assert {(200, "read"), (400, "read"), (200, "write"), (400, "write")} <= seen, seen
    assert run(http, sandbox, "import glob; print(glob.glob('/conn/**/evil', recursive=True) "
                              "or glob.glob('/conn/sub*'))").strip() == "[]"


def test_a_template_without_the_agent_refuses_files_and_commands(http: httpx.Client) -> None:
    sandbox = str(http.post("/api/v1/sandboxes", json={"template": "lean"}).json()["id"])
    try:
        for reply in (http.get(files(sandbox), params={"path": "x"}),
                      http.post(f"/api/v1/sandboxes/{sandbox}/commands", json={"command": "true"})):
            assert error(reply) == (400, "no_agent")
            assert "agent = true" in reply.json()["error"]["message"]
    finally:
        http.delete(f"/api/v1/sandboxes/{sandbox}")


def test_absolute_paths_inside_the_workspace_and_tmp(http: httpx.Client, sandbox: str) -> None:
    http.put(files(sandbox), params={"path": "/tmp/t.txt"}, content=b"t")
    assert http.get(files(sandbox), params={"path": "/tmp/t.txt"}).content == b"t"
    http.put(files(sandbox), params={"path": "/home/sandbox/w.txt"}, content=b"w")
    assert http.get(files(sandbox), params={"path": "w.txt"}).content == b"w"


def test_an_upload_past_max_file_size_is_413_and_leaves_nothing(http: httpx.Client,
                                                                sandbox: str) -> None:
    declared = http.put(files(sandbox), params={"path": "big"}, content=b"x" * (MAX_FILE + 1))
    assert error(declared) == (413, "file_too_large")

    def chunked() -> Iterator[bytes]:  # no Content-Length: the agent counts
        for _ in range(5):
            yield b"x" * (1 << 20)
    assert error(http.put(files(sandbox), params={"path": "big"}, content=chunked()))[0] == 413
    assert visible(http, sandbox) == "[]"


def test_a_full_workspace_is_507_and_leaves_nothing(http: httpx.Client, sandbox: str) -> None:
    run(http, sandbox, "open('filler', 'wb').write(b'x' * (6 << 20))")
    reply = http.put(files(sandbox), params={"path": "more"}, content=b"y" * (3 << 20))
    assert error(reply) == (507, "insufficient_storage")
    assert visible(http, sandbox) == "['filler']"


def test_unknown_sandbox_is_404(http: httpx.Client) -> None:
    assert http.get(files("sbx_0000000000000000"), params={"path": "x"}).status_code == 404


def test_rename_onto_an_existing_name_needs_overwrite(http: httpx.Client, sandbox: str) -> None:
    for name in ("a.txt", "b.txt"):
        http.put(files(sandbox), params={"path": name}, content=name.encode())
    move = {"source": "a.txt", "destination": "b.txt"}
    assert error(http.post(files(sandbox, "/rename"), json=move)) == (409, "file_exists")
    assert http.post(files(sandbox, "/rename"), json=move | {"overwrite": True}).status_code == 200
    assert http.get(files(sandbox), params={"path": "b.txt"}).content == b"a.txt"
    lone_surrogate = b'{"source": "b.txt", "destination": "\\ud800"}'  # valid JSON, no UTF-8
    assert error(http.post(files(sandbox, "/rename"), content=lone_surrogate)) == \
        (400, "invalid_path")
