"""The E2B surface's pure parts: the Connect codec, the shapes and paths, the event mappings."""

from __future__ import annotations

import doctest
import types

import pytest
from sandcell_gateway import config
from sandcell_gateway.e2b import connect, filesystem, interpreter, models, process
from sandcell_gateway.e2b.connect import ConnectError
from sandcell_gateway.errors import BadRequest, Conflict, NotFound


@pytest.mark.parametrize("module", [connect, models, interpreter, process, config])
def test_doctests(module: types.ModuleType) -> None:
    results = doctest.testmod(module)
    assert results.attempted > 0 and results.failed == 0


def test_a_stream_request_is_one_whole_frame() -> None:
    frame = connect.envelope({"process": {"pid": 7}})
    assert connect.read_envelope(frame) == {"process": {"pid": 7}}
    for bad in (b"", frame[:4], frame + b"x", frame[:-1], b"\x01" + frame[1:]):
        with pytest.raises(ConnectError) as info:
            connect.read_envelope(bad)
        assert info.value.code == "invalid_argument"


def test_end_of_stream_sets_the_end_flag() -> None:
    assert connect.end_of_stream() == b"\x02\x00\x00\x00\x02{}"
    assert connect.end_of_stream(ConnectError("deadline_exceeded", "late"))[0] == 0x02


@pytest.mark.parametrize(("error", "code"), [
    (NotFound("no file", code="file_not_found"), "not_found"),
    (BadRequest("bad path", code="invalid_path"), "invalid_argument"),
    (Conflict("exists", code="file_exists"), "already_exists"),
    (Conflict("done", code="command_finished"), "not_found"),
])
def test_gateway_errors_become_the_codes_the_sdk_maps(error: Exception, code: str) -> None:
    assert isinstance(error, connect.GatewayError)
    assert connect.from_gateway_error(error).code == code


@pytest.mark.parametrize("body", [b"[]", b"not json", b"\xff"])
def test_a_unary_request_must_be_a_json_object(body: bytes) -> None:
    with pytest.raises(ConnectError):
        connect.parse_json(body)


def test_bytes_fields_accept_every_base64_spelling() -> None:
    for spelling in ("aGk/", "aGk_", "aGk"):
        assert connect.bytes_field({"stdin": spelling}, "stdin")[:2] == b"hi"
    with pytest.raises(ConnectError):
        connect.bytes_field({"stdin": "!!"}, "stdin")


def test_paths_map_home_user_to_the_workspace_and_back() -> None:
    assert models.sandcell_path("/home/user") == "."
    assert models.sandcell_path("/home/userx/a") == "/home/userx/a"  # not the home
    assert models.e2b_path(models.sandcell_path("/home/user/a/b")) == "/home/user/a/b"


def test_entry_info_is_proto_json() -> None:
    entry = models.entry_info({"name": "d", "path": "d", "type": "dir", "size": 4096,
                               "modified": 1.5})
    assert entry["type"] == "FILE_TYPE_DIRECTORY" and entry["size"] == "4096"
    assert entry["path"] == "/home/user/d" and entry["modifiedTime"].endswith(".500000000Z")


def test_a_login_shell_runs_as_bash_c_and_a_program_as_its_argv() -> None:
    shell = process.start_spec({"process": {"cmd": "/bin/bash", "args": ["-l", "-c", "ls"],
                                            "cwd": "/home/user/d"}}, timeout=2.0)
    assert shell.argv == ("/bin/bash", "-c", "ls") and shell.cwd == "d" and shell.timeout == 2.0
    program = process.start_spec({"process": {"cmd": "python3", "args": ["-V"]}}, None)
    assert program.argv == ("python3", "-V") and program.cwd == ""


@pytest.mark.parametrize("message", [
    {"process": {"cmd": ""}},
    {"process": {"cmd": "ls", "args": "-l"}},
    {"process": {"cmd": "ls", "envs": {"1BAD": "x"}}},
    {"process": {"cmd": "ls\x00"}},
    {"process": {"cmd": "ls"}, "pty": {"size": {"cols": 80, "rows": 24}}},
])
def test_bad_start_requests_are_refused(message: dict[str, object]) -> None:
    with pytest.raises(ConnectError) as info:
        process.start_spec(message, None)
    assert info.value.code in ("invalid_argument", "unimplemented")


def test_command_events_become_process_events() -> None:
    assert process.process_event({"msg_type": "started", "content": {"pid": 3}}) == \
        {"event": {"start": {"pid": 3}}}
    assert process.process_event({"msg_type": "stream",
                                  "content": {"name": "stderr", "text": "é"}}) == \
        {"event": {"data": {"stderr": "w6k="}}}
    assert process.process_event({"msg_type": "exit", "content": {"exit_code": 2}}) == \
        {"event": {"end": {"exitCode": 2, "exited": True, "status": "exit status 2"}}}
    for kind, code in (("timeout", "deadline_exceeded"), ("gateway_error", "unavailable")):
        with pytest.raises(ConnectError) as info:
            process.process_event({"msg_type": kind,
                                   "content": {"timeout": 1, "code": "x", "message": "m"}})
        assert info.value.code == code


def test_rich_results_keep_every_mime_type() -> None:
    line = interpreter.result({"text/plain": "<Figure>", "image/png": "iVBOR",
                               "application/vnd.custom": {"k": 1}}, is_main=False)
    assert line == {"type": "result", "text": "<Figure>", "png": "iVBOR",
                    "extra": {"application/vnd.custom": {"k": 1}}, "is_main_result": False}


def test_only_the_default_python_context_exists() -> None:
    interpreter.check_context(None, None)
    interpreter.check_context("default", "python")
    with pytest.raises(NotFound):
        interpreter.check_context("other", None)
    with pytest.raises(BadRequest):
        interpreter.check_context(None, "r")


def test_list_dir_depth_is_bounded() -> None:
    assert filesystem.MAX_DEPTH >= 1


def test_e2b_aliases_add_to_the_defaults(tmp_path: object) -> None:
    e2b = config._e2b({"aliases": {"base": "tiny"}})
    assert e2b.template("base") == "tiny" and e2b.template("code-interpreter-v1") == "python"
    with pytest.raises(config.ConfigError):
        config._e2b({"enabled": "yes"})
    with pytest.raises(config.ConfigError):
        config._e2b({"nope": 1})
