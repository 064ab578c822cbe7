"""``session.files`` and ``session.commands`` against a fake gateway at the HTTP boundary: the
requests they send and what they make of the answers (the real gateway: tests/integration/
test_sdk_files_commands.py)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sandcell

from .fakes import BASE_URL, TOKEN, error_response, event, ndjson, sandbox_json

SBX = "sbx_0123456789abcdef"
CMD = "cmd_0123456789abcdef"
INFO = {"name": "in.csv", "path": "data/in.csv", "type": "file", "size": 8, "modified": 1.5}
Handler = Callable[[httpx.Request], httpx.Response]


def session(handler: Handler) -> sandcell.Session:
    client = sandcell.Client(base_url=BASE_URL, token=TOKEN, transport=httpx.MockTransport(handler))
    return sandcell.Session(client._api, sandcell.SandboxInfo.from_json(sandbox_json(SBX)))


def recording(answer: Callable[[httpx.Request], httpx.Response]) -> tuple[Handler, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return answer(request)

    return handler, seen


def test_write_sends_the_bytes_to_the_path_and_returns_file_info() -> None:
    handler, seen = recording(lambda request: httpx.Response(200, json=INFO))
    info = session(handler).files.write("data/in.csv", b"a,b\n1,2\n")
    assert (seen[0].method, seen[0].url.path, seen[0].url.params["path"]) == \
        ("PUT", f"/api/v1/sandboxes/{SBX}/files", "data/in.csv")
    assert seen[0].content == b"a,b\n1,2\n"
    assert (info.name, info.path, info.type, info.size) == ("in.csv", "data/in.csv", "file", 8)
    assert info.modified.timestamp() == 1.5 and info.is_file


@pytest.mark.parametrize("data", ["a,b\n", b"a,b\n", io.BytesIO(b"a,b\n")], ids=["str", "bytes", "file"])
def test_write_takes_text_bytes_or_a_binary_file(data: Any) -> None:
    handler, seen = recording(lambda request: httpx.Response(200, json=INFO))
    session(handler).files.write("x", data)
    assert seen[0].content == b"a,b\n"


def test_read_list_exists_remove_and_make_dir() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path.rsplit("/", 1)[-1]
        if path == "list":
            return httpx.Response(200, json={"files": [INFO]})
        if path == "stat":
            if request.url.params["path"] == "nope":
                return error_response(404, "file_not_found", "nope: no such file or directory")
            return httpx.Response(200, json=INFO)
        if path == "mkdir":
            return httpx.Response(201, json=INFO | {"type": "dir"})
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(200, content="héllo".encode())

    handler, seen = recording(answer)
    files = session(handler).files
    assert files.read("a") == "héllo".encode() and files.read_text("a") == "héllo"
    assert [f.name for f in files.list("data")] == ["in.csv"]
    assert files.exists("data/in.csv") and not files.exists("nope")
    assert files.make_dir("out").is_dir
    files.remove("out", recursive=True)
    assert seen[-1].method == "DELETE" and seen[-1].url.params["recursive"] == "true"


def test_a_missing_file_is_not_found_and_a_bad_path_a_bad_request() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.params["path"].startswith(".."):
            return error_response(400, "invalid_path", "'..' leads outside the workspace")
        return error_response(404, "file_not_found", "x: no such file or directory")

    files = session(answer).files
    with pytest.raises(sandcell.NotFoundError) as missing:
        files.read("x")
    assert missing.value.code == "file_not_found"
    with pytest.raises(sandcell.BadRequestError) as bad:
        files.read("../etc/passwd")
    assert bad.value.code == "invalid_path"


def test_upload_streams_a_local_file_and_download_writes_one(tmp_path: Path) -> None:
    local = tmp_path / "local.bin"
    local.write_bytes(b"\x00\x01" * 1000)
    handler, seen = recording(lambda request: httpx.Response(200, json=INFO) if request.method == "PUT"
                              else httpx.Response(200, content=b"downloaded"))
    files = session(handler).files
    files.upload(local, "data/x.bin")
    assert seen[0].content == local.read_bytes()
    assert files.download("out/plot.png", tmp_path / "plot.png") == tmp_path / "plot.png"
    assert (tmp_path / "plot.png").read_bytes() == b"downloaded"


def test_a_failed_download_leaves_nothing_behind(tmp_path: Path) -> None:
    class Broken(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield b"half"
            raise httpx.ReadError("connection lost")

    out = tmp_path / "out"
    out.mkdir()
    files = session(lambda request: error_response(404, "file_not_found", "gone")).files
    with pytest.raises(sandcell.NotFoundError):
        files.download("gone.png", out / "plot.png")
    files = session(lambda request: httpx.Response(200, stream=Broken())).files
    with pytest.raises(sandcell.APIConnectionError):
        files.download("half.png", out / "plot.png")
    assert list(out.iterdir()) == []


def command_events(*extra: dict[str, Any]) -> bytes:
    return ndjson(event(0, "started", id=CMD, pid=7), *extra)


def test_run_streams_output_to_callbacks_and_a_nonzero_exit_is_data() -> None:
    handler, seen = recording(lambda request: httpx.Response(200, content=command_events(
        event(1, "stream", name="stdout", text="42\n"), event(2, "stream", name="stderr", text="warn\n"),
        event(3, "exit", exit_code=2))))
    out: list[str] = []
    result = session(handler).commands.run("python -c 'print(6*7)'", on_stdout=out.append, timeout=30)
    assert json.loads(seen[0].content) == {"command": "python -c 'print(6*7)'", "timeout": 30}
    assert out == ["42\n"]
    assert (result.exit_code, result.stdout, result.stderr, result.ok) == (2, "42\n", "warn\n", False)


def test_run_past_its_timeout_raises_with_the_partial_output() -> None:
    stream = command_events(event(1, "stream", name="stdout", text="partial"), event(2, "timeout", timeout=1),
                            event(3, "exit", exit_code=-9))
    with pytest.raises(sandcell.TimeoutError) as caught:
        session(lambda request: httpx.Response(200, content=stream)).commands.run("sleep 9", timeout=1)
    assert caught.value.command is not None and caught.value.command.stdout == "partial"
    assert "process group was killed" in str(caught.value)


def test_a_gateway_error_raises_sandbox_error() -> None:
    stream = command_events(event(1, "gateway_error", code="sandbox_closed", message="closed"))
    with pytest.raises(sandcell.SandboxError) as caught:
        session(lambda request: httpx.Response(200, content=stream)).commands.run("sleep 9")
    assert caught.value.code == "sandbox_closed" and "the command" in str(caught.value)


def test_start_returns_a_handle_whose_events_replay_from_the_start() -> None:
    described = {"id": CMD, "command": "python train.py", "cwd": "work", "pid": 7, "background": True,
                 "state": "running", "exit_code": None, "started_at": "x", "finished_at": None}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(200, content=command_events(event(1, "stream", name="stdout", text="a"),
                                                              event(2, "exit", exit_code=0)))
        if request.url.path.endswith("/signal"):
            return error_response(409, "command_finished", "finished")
        if request.url.path.endswith("/stdin"):
            return httpx.Response(204)
        return httpx.Response(201, json=described)

    handler, seen = recording(answer)
    handle = session(handler).commands.start("python train.py", cwd="work", env={"X": "1"})
    assert json.loads(seen[0].content) == {"command": "python train.py", "cwd": "work", "env": {"X": "1"},
                                           "stdin": True, "background": True}
    assert (handle.id, handle.pid) == (CMD, 7)
    handle.send_stdin("y\n")
    assert json.loads(seen[1].content) == {"data": "y\n"}
    events = list(handle)
    assert events == [sandcell.CommandStdout("a"), sandcell.CommandExit(0)]
    assert handle.wait() == sandcell.CommandResult(exit_code=0, stdout="a", stderr="", id=CMD)
    assert handle.kill() is False  # it had already finished
    assert seen[-1].url.path == f"/api/v1/sandboxes/{SBX}/commands/{CMD}/signal"


def test_args_are_sent_as_the_argv() -> None:
    handler, seen = recording(lambda request: httpx.Response(200, content=command_events(
        event(1, "exit", exit_code=0))))
    session(handler).commands.run(["python", "-c", "print(1)"], cwd="w")
    assert json.loads(seen[0].content) == {"args": ["python", "-c", "print(1)"], "cwd": "w"}


@pytest.mark.anyio
async def test_the_async_twin_runs_commands_and_files() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/commands"):
            return httpx.Response(200, content=command_events(event(1, "stream", name="stdout", text="x"),
                                                              event(2, "exit", exit_code=0)))
        return httpx.Response(200, json=INFO)

    transport = httpx.MockTransport(answer)
    async with sandcell.AsyncClient(base_url=BASE_URL, token=TOKEN, transport=transport) as client:
        s = sandcell.AsyncSession(client._api, sandcell.SandboxInfo.from_json(sandbox_json(SBX)))
        assert (await s.commands.run("echo x")).stdout == "x"
        assert (await s.files.write("in.csv", io.BytesIO(b"a"))).name == "in.csv"
