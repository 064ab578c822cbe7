"""Configuration: Timeout, and where the client finds its gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import sandcell
from sandcell._config import DEFAULT_BASE_URL, ClientConfig, RuntimeFile, find_gateway, pid_alive, runtime_dir

from .fakes import FakeGateway


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def write_runtime(directory: Path, port: int, *, pid: int, started_at: object, token: str = "") -> Path:
    path = directory / f"gateway-{port}.json"
    url = f"http://127.0.0.1:{port}"
    path.write_text(json.dumps({"url": url, "token": token or f"tok-{port}", "pid": pid, "started_at": started_at}))
    return path


# Timeout


def test_timeout_is_a_value_object_with_repr_and_equality() -> None:
    assert sandcell.Timeout() == sandcell.Timeout(connect=5.0, read=30.0, write=30.0)
    assert sandcell.Timeout(read=1) != sandcell.Timeout()
    assert repr(sandcell.Timeout(read=60)) == "Timeout(connect=5.0, read=60, write=30.0)"
    assert len({sandcell.Timeout(), sandcell.Timeout()}) == 1


def test_timeout_coerce_spreads_one_number_and_keeps_a_timeout() -> None:
    assert sandcell.Timeout.coerce(7) == sandcell.Timeout(connect=7, read=7, write=7)
    assert sandcell.Timeout.coerce(None) == sandcell.Timeout(connect=None, read=None, write=None)
    custom = sandcell.Timeout(read=99)
    assert sandcell.Timeout.coerce(custom) is custom


def test_an_execution_waits_at_least_its_own_timeout_plus_a_margin() -> None:
    base = sandcell.Timeout(read=30)
    assert base.for_execution(5).read == 30  # the client's read timeout is already longer
    long_read = base.for_execution(100).read
    assert long_read is not None and long_read > 100
    assert base.for_execution(None).read is None
    assert sandcell.Timeout(read=None).for_execution(100).read is None


def test_timeout_converts_to_httpx() -> None:
    converted = sandcell.Timeout(connect=1, read=2, write=3).as_httpx()
    assert converted == httpx.Timeout(connect=1, read=2, write=3, pool=1)


# Precedence: keyword arguments > environment > runtime file > default


def test_without_any_configuration_the_default_url_is_used() -> None:
    assert ClientConfig.resolve() == ClientConfig(base_url=DEFAULT_BASE_URL, token=None)


def test_environment_beats_the_runtime_file(monkeypatch: pytest.MonkeyPatch, isolated_environment: Path) -> None:
    write_runtime(isolated_environment, 9001, pid=os.getpid(), started_at=1.0)
    monkeypatch.setenv("SANDCELL_URL", "http://env:1")
    monkeypatch.setenv("SANDCELL_TOKEN", "env-token")
    assert ClientConfig.resolve() == ClientConfig(base_url="http://env:1", token="env-token")


def test_keyword_arguments_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDCELL_URL", "http://env:1")
    monkeypatch.setenv("SANDCELL_TOKEN", "env-token")
    config = ClientConfig.resolve(base_url="http://kwarg:2/", token="kwarg-token")
    assert config == ClientConfig(base_url="http://kwarg:2", token="kwarg-token")


def test_the_runtime_file_beats_the_default(isolated_environment: Path) -> None:
    write_runtime(isolated_environment, 9001, pid=os.getpid(), started_at=1.0)
    assert ClientConfig.resolve() == ClientConfig(base_url="http://127.0.0.1:9001", token="tok-9001")


def test_a_runtime_token_is_only_sent_to_its_own_gateway(
    monkeypatch: pytest.MonkeyPatch, isolated_environment: Path
) -> None:
    write_runtime(isolated_environment, 9001, pid=os.getpid(), started_at=1.0)
    monkeypatch.setenv("SANDCELL_URL", "http://elsewhere:8765")
    assert ClientConfig.resolve().token is None
    monkeypatch.setenv("SANDCELL_URL", "http://127.0.0.1:9001/")
    assert ClientConfig.resolve().token == "tok-9001"


def test_an_explicit_token_wins_over_the_runtime_file_s(isolated_environment: Path) -> None:
    write_runtime(isolated_environment, 9001, pid=os.getpid(), started_at=1.0)
    config = ClientConfig.resolve(token="mine")
    assert config == ClientConfig(base_url="http://127.0.0.1:9001", token="mine")


def test_empty_environment_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDCELL_URL", "")
    monkeypatch.setenv("SANDCELL_TOKEN", "")
    assert ClientConfig.resolve() == ClientConfig(base_url=DEFAULT_BASE_URL, token=None)


# Runtime-file discovery


def test_the_newest_live_gateway_is_chosen_and_dead_ones_are_ignored(isolated_environment: Path) -> None:
    write_runtime(isolated_environment, 9001, pid=os.getpid(), started_at=100.0)
    write_runtime(isolated_environment, 9002, pid=os.getpid(), started_at="2030-01-01T00:00:00Z")
    write_runtime(isolated_environment, 9003, pid=dead_pid(), started_at="2031-01-01T00:00:00Z")
    found = find_gateway()
    assert found is not None and found.url == "http://127.0.0.1:9002"


def test_malformed_and_unrelated_files_are_skipped(isolated_environment: Path) -> None:
    (isolated_environment / "gateway-1.json").write_text("{not json")
    (isolated_environment / "gateway-2.json").write_text(json.dumps({"url": "http://x", "pid": "nope"}))
    (isolated_environment / "gateway-3.json").write_text(json.dumps(["a list"]))
    (isolated_environment / "other.json").write_text(json.dumps({"url": "http://x", "pid": os.getpid(), "started_at": 1}))
    assert find_gateway() is None


def test_a_missing_runtime_directory_means_no_gateway(tmp_path: Path) -> None:
    assert find_gateway(tmp_path / "does-not-exist") is None


def test_the_runtime_directory_defaults_under_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SANDCELL_RUNTIME_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert runtime_dir() == tmp_path / ".local" / "share" / "sandcell" / "runtime"
    directory = runtime_dir()
    directory.mkdir(parents=True)
    write_runtime(directory, 9004, pid=os.getpid(), started_at=1.0)
    assert ClientConfig.resolve().base_url == "http://127.0.0.1:9004"


def test_runtime_file_repr_hides_the_token() -> None:
    runtime = RuntimeFile.parse({"url": "http://h", "token": "s3cret", "pid": 1, "started_at": 1})
    assert runtime is not None and "s3cret" not in repr(runtime)
    assert "s3cret" not in repr(ClientConfig(base_url="http://h", token="s3cret"))


def test_pid_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(dead_pid())
    assert not pid_alive(0) and not pid_alive(-1)

    def not_ours(pid: int, signal: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", not_ours)
    assert pid_alive(12345)  # exists, owned by someone else


def test_a_client_with_no_arguments_talks_to_the_discovered_gateway(isolated_environment: Path) -> None:
    write_runtime(isolated_environment, 9005, pid=os.getpid(), started_at=1.0, token="found-token")
    gateway = FakeGateway(token="found-token")
    with sandcell.Client(transport=gateway.transport) as client:
        assert client.base_url == "http://127.0.0.1:9005"
        assert client.sessions.list() == []
    assert str(gateway.requests[0].url) == "http://127.0.0.1:9005/api/v1/sandboxes"
    assert gateway.requests[0].headers["Authorization"] == "Bearer found-token"
