"""The sandbox agent, served for real over gRPC on a Unix socket, on temporary roots."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sandcell_agent._proto import sandbox_pb2 as pb
from sandcell_agent._proto import sandbox_pb2_grpc as rpc
from sandcell_agent.paths import Roots
from sandcell_agent.server import Agent, serve


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[rpc.SandboxAgentStub, Path]]:
    workspace, tmp = tmp_path / "ws", tmp_path / "tmp"
    workspace.mkdir()
    tmp.mkdir()
    server = serve(str(tmp_path / "agent.sock"), Agent(Roots(str(workspace), str(tmp))))
    channel = grpc.insecure_channel(f"unix:{tmp_path / 'agent.sock'}")
    try:
        yield rpc.SandboxAgentStub(channel), workspace
    finally:
        channel.close()
        server.stop(grace=0).wait()


def write(stub: rpc.SandboxAgentStub, path: str, *chunks: bytes, max_size: int = 0) -> pb.FileInfo:
    def requests() -> Iterator[pb.WriteChunk]:
        yield pb.WriteChunk(header=pb.WriteHeader(path=path, make_parents=True, max_size=max_size))
        for chunk in chunks:
            yield pb.WriteChunk(data=chunk)
    return stub.WriteFile(requests())


def error_code(exc: grpc.RpcError) -> str:
    return str(dict(exc.trailing_metadata() or ())["sandcell-error"])  # type: ignore[attr-defined]


def test_health_answers(agent: tuple[rpc.SandboxAgentStub, Path]) -> None:
    stub, workspace = agent
    assert stub.Health(pb.HealthRequest(), timeout=5).workspace == str(workspace)


def test_write_read_list_round_trip(agent: tuple[rpc.SandboxAgentStub, Path]) -> None:
    stub, workspace = agent
    info = write(stub, "data/in.csv", b"a,b\n", b"1,2\n")
    assert (info.path, info.size, info.type) == ("data/in.csv", 8, pb.FILE_TYPE_FILE)
    assert (workspace / "data" / "in.csv").read_bytes() == b"a,b\n1,2\n"
    chunks = list(stub.ReadFile(pb.PathRequest(path="data/in.csv")))
    assert chunks[0].info.size == 8 and b"".join(c.data for c in chunks[1:]) == b"a,b\n1,2\n"
    assert [e.name for e in stub.ListDir(pb.PathRequest(path="data")).entries] == ["in.csv"]


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/etc/passwd", "a\0b"])
def test_bad_paths_are_invalid(agent: tuple[rpc.SandboxAgentStub, Path], path: str) -> None:
    stub, _ = agent
    with pytest.raises(grpc.RpcError) as caught:
        stub.Stat(pb.PathRequest(path=path))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert error_code(caught.value) == "invalid_path"


def test_a_symlink_outside_is_neither_read_nor_written(
        agent: tuple[rpc.SandboxAgentStub, Path], tmp_path: Path) -> None:
    stub, workspace = agent
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s3cret")
    os.symlink(outside, workspace / "evil")
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.ReadFile(pb.PathRequest(path="evil/secret")))
    assert error_code(caught.value) == "invalid_path"
    with pytest.raises(grpc.RpcError) as caught:
        write(stub, "evil/new", b"x")
    assert error_code(caught.value) == "invalid_path"
    assert sorted(os.listdir(outside)) == ["secret"]


def test_missing_and_wrong_kind(agent: tuple[rpc.SandboxAgentStub, Path]) -> None:
    stub, _ = agent
    write(stub, "f", b"x")
    stub.MakeDir(pb.PathRequest(path="d"))
    cases = [(lambda: list(stub.ReadFile(pb.PathRequest(path="nope"))), "file_not_found"),
             (lambda: list(stub.ReadFile(pb.PathRequest(path="d"))), "wrong_file_type"),
             (lambda: stub.ListDir(pb.PathRequest(path="f")), "wrong_file_type")]
    for call, code in cases:
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert error_code(caught.value) == code


def test_a_write_past_max_size_leaves_nothing(agent: tuple[rpc.SandboxAgentStub, Path]) -> None:
    stub, workspace = agent
    with pytest.raises(grpc.RpcError) as caught:
        write(stub, "big", b"x" * 60, b"x" * 60, max_size=100)
    assert error_code(caught.value) == "file_too_large"
    assert os.listdir(workspace) == []


def test_a_command_streams_and_reports_its_exit(agent: tuple[rpc.SandboxAgentStub, Path]) -> None:
    stub, _ = agent
    events = list(stub.Start(pb.StartRequest(command="echo hi; echo err >&2; exit 3",
                                             process_id="p1"), timeout=30))
    kinds = [e.WhichOneof("kind") for e in events]
    assert kinds[0] == "started" and kinds[-1] == "exited"
    assert b"".join(e.stdout.data for e in events if e.HasField("stdout")) == b"hi\n"
    assert b"".join(e.stderr.data for e in events if e.HasField("stderr")) == b"err\n"
    assert events[-1].exited.exit_code == 3


def test_signal_kills_the_process_group(agent: tuple[rpc.SandboxAgentStub, Path]) -> None:
    stub, _ = agent
    stream = stub.Start(pb.StartRequest(command="sleep 600 & sleep 600; wait", process_id="p2"),
                        timeout=30)
    assert next(stream).HasField("started")
    stub.Signal(pb.SignalRequest(process_id="p2", signal=9))
    events = list(stream)
    assert events[-1].exited.exit_code == -9


def test_a_cancelled_command_is_killed_and_reaped(agent: tuple[rpc.SandboxAgentStub, Path]) -> None:
    stub, _ = agent
    stream = stub.Start(pb.StartRequest(command="sleep 600", process_id="p3"), timeout=30)
    pid = next(stream).started.pid
    stream.cancel()  # the gateway went away: the group is killed and its leader reaped
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}"):  # a zombie keeps its /proc entry until reaped
        assert time.monotonic() < deadline, f"process {pid} was not reaped"
        time.sleep(0.05)  # poll interval


def test_its_protocol_loads_beside_the_plugin_protocol() -> None:
    """One process (the gateway) holds both: their symbols must not collide in protobuf's pool."""
    import importlib

    for module in ("sandcell_plugin._proto.plugin_pb2", "sandcell_agent._proto.sandbox_pb2"):
        importlib.import_module(module)
