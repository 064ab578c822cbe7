"""The gateway's agent connection: ready only once a real agent answered, as the sandbox user."""

from __future__ import annotations

import os
import time
from pathlib import Path

import grpc
import pytest
from sandcell_agent.paths import Roots
from sandcell_agent.server import Agent, serve
from sandcell_gateway import agent as agent_module
from sandcell_gateway.agent import AgentConnection, AgentNotReady, agent_exit_reason

pytestmark = pytest.mark.anyio


def serve_agent(conn_dir: Path) -> grpc.Server:
    (conn_dir / "ws").mkdir()
    return serve(str(conn_dir / "agent.sock"), Agent(Roots(str(conn_dir / "ws"), str(conn_dir))))


async def test_ready_once_the_agent_answers(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_module, "SANDBOX_UID", os.getuid())  # this test's own agent
    server = serve_agent(tmp_path)
    connection = AgentConnection(tmp_path)
    try:
        health = await connection.wait_ready(deadline=10)
        assert health.pid == os.getpid()
    finally:
        connection.close()
        server.stop(grace=0).wait()


async def test_not_ready_without_an_agent(tmp_path: Path) -> None:
    connection = AgentConnection(tmp_path)
    started = time.monotonic()
    try:
        with pytest.raises(AgentNotReady, match="did not answer within 0.5 s"):
            await connection.wait_ready(deadline=0.5)
    finally:
        connection.close()
    assert time.monotonic() - started < 5


async def test_an_agent_running_as_another_user_is_refused(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_module, "SANDBOX_UID", os.getuid() + 1)
    server = serve_agent(tmp_path)
    connection = AgentConnection(tmp_path)
    try:
        with pytest.raises(AgentNotReady, match=f"runs as uid {os.getuid()}"):
            await connection.wait_ready(deadline=10)
    finally:
        connection.close()
        server.stop(grace=0).wait()


def test_the_launchers_note_names_why_the_agent_stopped(tmp_path: Path) -> None:
    assert agent_exit_reason(tmp_path) is None
    (tmp_path / "agent.exit").write_text("killed by signal 9")
    assert agent_exit_reason(tmp_path) == "its sandbox agent stopped (killed by signal 9)"
