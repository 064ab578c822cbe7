"""Commands through a real agent (served here over gRPC on a Unix socket, on temporary roots):
events in order, the timeout that kills the whole group, the output cap, replay, closing."""

from __future__ import annotations

import asyncio
import doctest
import signal
import types
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sandcell_agent._proto import sandbox_pb2 as pb
from sandcell_agent.paths import Roots
from sandcell_agent.server import Agent, serve
from sandcell_gateway import command_service as command_service_module
from sandcell_gateway import commands as commands_module
from sandcell_gateway import validation as validation_module
from sandcell_gateway.agent import AgentConnection
from sandcell_gateway.command_service import history_cell, parse_signal
from sandcell_gateway.commands import (
    Command,
    CommandLog,
    CommandSpec,
    CommandTable,
    launch,
)
from sandcell_gateway.errors import BadRequest, GatewayError, NotFound, TooManyRequests

pytestmark = pytest.mark.anyio
LIMIT = 32 << 20


def serve_agent(root: Path) -> grpc.Server:
    (root / "ws").mkdir()
    return serve(str(root / "agent.sock"), Agent(Roots(str(root / "ws"), str(root))))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("agent")
    server = serve_agent(root)
    try:
        yield root
    finally:
        server.stop(grace=0).wait()


@pytest.fixture(scope="module")
async def agent(served: Path) -> AsyncIterator[AgentConnection]:
    connection = AgentConnection(served)
    yield connection
    await connection.channel.close()


async def events(command: Command) -> list[tuple[str, dict[str, Any]]]:
    return [(e["msg_type"], e["content"]) async for e in command.log.events()]


def output(seen: list[tuple[str, dict[str, Any]]], name: str = "stdout") -> str:
    return "".join(c["text"] for kind, c in seen if kind == "stream" and c["name"] == name)


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll without blocking the loop (the gateway's side of the call runs on it)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)  # poll interval


def gone(pid: int) -> bool:
    """No such process, or only its zombie (killed, not yet reaped by its new parent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (FileNotFoundError, ProcessLookupError):  # reaped before, or while, we read
        return True


async def test_output_streams_in_order_and_the_exit_code_is_data(
        agent: AgentConnection) -> None:
    command = await launch(agent, CommandSpec.shell("echo hi; echo oops >&2; exit 3"), LIMIT)
    seen = await events(command)
    assert seen[0] == ("started", {"id": command.id, "pid": command.pid})
    assert output(seen) == "hi\n" and output(seen, "stderr") == "oops\n"
    assert seen[-1] == ("exit", {"exit_code": 3})
    assert (command.exit_code, command.describe()["state"]) == (3, "finished")


async def test_args_env_and_cwd(agent: AgentConnection, served: Path) -> None:
    (served / "ws" / "work").mkdir(exist_ok=True)
    spec = CommandSpec(("/bin/sh", "-c", 'echo "$X $Y $(pwd)"'), "sh", cwd="work",
                       env={"X": "1"})
    seen = await events(await launch(agent, spec, LIMIT, extra_env={"X": "0", "Y": "2"}))
    assert output(seen) == f"1 2 {served / 'ws' / 'work'}\n"


@pytest.mark.parametrize(("cwd", "error", "code"), [
    ("../x", BadRequest, "invalid_path"), ("/etc", BadRequest, "invalid_path"),
    ("nowhere", NotFound, "file_not_found")])
async def test_a_bad_cwd_starts_nothing(agent: AgentConnection, cwd: str,
                                        error: type[GatewayError], code: str) -> None:
    with pytest.raises(error) as caught:
        await launch(agent, CommandSpec.shell("true", cwd=cwd), LIMIT)
    assert caught.value.code == code


async def test_a_timeout_kills_the_whole_process_group(agent: AgentConnection) -> None:
    spec = CommandSpec.shell("sleep 600 & echo $!; sleep 600", timeout=0.5)
    command = await launch(agent, spec, LIMIT)
    seen = await events(command)
    child = int(output(seen))
    assert [kind for kind, _ in seen[-2:]] == ["timeout", "exit"]
    assert seen[-1][1] == {"exit_code": -signal.SIGKILL}
    await wait_for(lambda: gone(child) and gone(command.pid), 10, "the group to die")


async def test_output_past_the_cap_is_cut_with_a_marker(agent: AgentConnection) -> None:
    command = await launch(agent, CommandSpec.shell("head -c 300000 /dev/zero | tr '\\0' x"),
                           1000)
    seen = await events(command)
    assert output(seen) == "x" * 1000
    assert "[Sandcell: output truncated after 1000 bytes;" in output(seen, "stderr")
    assert seen[-1] == ("exit", {"exit_code": 0})


async def test_a_late_reader_gets_everything_from_the_start(agent: AgentConnection) -> None:
    command = await launch(agent, CommandSpec.shell("for i in $(seq 200); do echo $i; done"),
                           LIMIT)
    first = await events(command)
    again = await events(command)
    assert output(again) == output(first) == "".join(f"{i}\n" for i in range(1, 201))
    assert len(command.log.entries) < 10  # the writes were merged into pieces


async def test_stdin_reaches_the_command(agent: AgentConnection) -> None:
    command = await launch(agent, CommandSpec.shell("cat; echo done", stdin=True), LIMIT)
    await agent.stub.WriteStdin(pb.StdinRequest(process_id=command.id, data=b"y\n", close=True))
    assert output(await events(command)) == "y\ndone\n"


async def test_closing_the_table_kills_its_commands(agent: AgentConnection) -> None:
    table = CommandTable()
    command = await launch(agent, CommandSpec.shell("sleep 600"), LIMIT)
    table.add(command)
    table.close("sandbox sbx_x was closed")
    seen = await events(command)
    assert seen[-1] == ("gateway_error", {"code": "sandbox_closed",
                                          "message": "sandbox sbx_x was closed"})
    await wait_for(lambda: gone(command.pid), 10, "the command to die")


async def test_a_table_runs_at_most_max_running_and_keeps_the_last_finished(
        agent: AgentConnection) -> None:
    table = CommandTable(max_running=1, keep=1)
    with table.reserve():
        with pytest.raises(TooManyRequests), table.reserve():  # a start in flight holds its place
            pass
        running = await launch(agent, CommandSpec.shell("sleep 600"), LIMIT)
        table.add(running)
    with pytest.raises(TooManyRequests) as caught, table.reserve():
        pass
    assert caught.value.code == "too_many_commands"
    finished = []
    for _ in range(2):
        command = await launch(agent, CommandSpec.shell("true"), LIMIT)
        await events(command)
        table.add(command)
        finished.append(command)
    assert [c.id for c in table.list()] == [running.id, finished[1].id]
    with pytest.raises(NotFound):
        table.get(finished[0].id)
    table.close("done")


async def test_a_dead_agent_ends_the_stream_with_a_gateway_error(
        agent: AgentConnection, tmp_path: Path) -> None:
    server = serve_agent(tmp_path)
    own = AgentConnection(tmp_path)
    try:
        command = await launch(own, CommandSpec.shell("sleep 600"), LIMIT)
        server.stop(grace=0)
        seen = await events(command)
        assert seen[-1][0] == "gateway_error" and seen[-1][1]["code"] == "kernel_died"
    finally:
        await own.channel.close()


def test_log_replays_merged_text_to_each_reader() -> None:
    async def run() -> list[list[tuple[str, Any]]]:
        log = CommandLog()
        readers = []
        for text in "abc":
            log.add_text("stdout", text)
        log.add_text("stderr", "e")
        log.finish()
        for _ in range(2):
            readers.append([(e["seq"], e["content"]["text"]) async for e in log.events()])
        return readers

    assert asyncio.run(run()) == [[(0, "abc"), (1, "e")]] * 2


def test_signals_by_name_or_number() -> None:
    assert parse_signal("TERM") == parse_signal("sigterm") == 15
    with pytest.raises(BadRequest, match="is not a signal"):
        parse_signal("SIGNOPE")
    with pytest.raises(BadRequest):
        parse_signal(4242)


@pytest.mark.parametrize("module", [commands_module, command_service_module, validation_module])
def test_doctests(module: types.ModuleType) -> None:
    results = doctest.testmod(module)
    assert results.attempted > 0 and results.failed == 0


async def test_a_finished_command_becomes_a_notebook_cell(agent: AgentConnection) -> None:
    command = await launch(agent, CommandSpec.shell("echo hi; echo no >&2; exit 2"), LIMIT)
    done: list[Command] = []
    command.when_done(done.append)
    await events(command)
    cell = history_cell(done[0])
    assert (cell.code, cell.status, cell.notes) == ("!echo hi; echo no >&2; exit 2", "error",
                                                    {"exit_code": 2})
    # two pipes: which of them the agent reads first is not fixed
    assert sorted(cell.outputs, key=lambda output: output["name"]) == [
        {"output_type": "stream", "name": "stderr", "text": "no\n"},
        {"output_type": "stream", "name": "stdout", "text": "hi\n"}]
    two_lines = await launch(agent, CommandSpec.shell("echo a\necho b"), LIMIT)
    await events(two_lines)
    assert history_cell(two_lines).code == "%%bash\necho a\necho b"
    assert history_cell(two_lines).status == "ok"
