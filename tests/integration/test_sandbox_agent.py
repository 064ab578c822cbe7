"""The sandbox agent inside real sandbox containers: reachable, as the sandbox user, watched."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc
import pytest
import sandcell
from sandcell_agent._proto import sandbox_pb2 as pb
from sandcell_agent._proto import sandbox_pb2_grpc as rpc
from sandcell_gateway.config import default_state_dir

from .conftest import Gateway, wait_for

pytestmark = pytest.mark.docker

CONFIG = """
[gateway]
gateway_id = "{gateway_id}"

[templates.python]
min_ready = 1
max_total = 4

[plugins]
enabled = false
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with Gateway(tmp_path_factory.mktemp("agent"), CONFIG) as gw:
        gw.wait_ready()
        yield gw


@pytest.fixture
def session(gateway: Gateway) -> Iterator[sandcell.Session]:
    with sandcell.Client(base_url=gateway.url, token=gateway.token) as client:
        with client.sessions.create() as session:
            yield session


def agent_of(gateway: Gateway, session: sandcell.Session) -> rpc.SandboxAgentStub:
    """A channel of the test's own to the agent socket the gateway found ready."""
    socket = default_state_dir() / gateway.gateway_id / session.id / "agent.sock"
    assert socket.is_socket(), f"no agent socket at {socket}"
    return rpc.SandboxAgentStub(grpc.insecure_channel(f"unix:{socket}"))


def test_a_claimed_sandbox_has_its_agent_as_the_sandbox_user(
        gateway: Gateway, session: sandcell.Session) -> None:
    health = agent_of(gateway, session).Health(pb.HealthRequest(), timeout=10)
    assert health.uid == 1000
    assert health.workspace == "/home/sandbox"
    # the agent is a process of its own beside the kernel, and holds no capability
    status = session.execute(f"print(open('/proc/{health.pid}/status').read())").stdout
    caps = {line.split(":")[0]: line.split()[1] for line in status.splitlines()
            if line.startswith("Cap")}
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapBnd"] == "0000000000000000"
    assert session.execute("import os; print(os.getpid())").stdout.strip() != str(health.pid)


def test_the_kernel_sees_what_the_agent_writes(gateway: Gateway,
                                                session: sandcell.Session) -> None:
    def chunks() -> Iterator[pb.WriteChunk]:
        yield pb.WriteChunk(header=pb.WriteHeader(path="data/in.csv", make_parents=True))
        yield pb.WriteChunk(data=b"a,b\n1,2\n")

    agent_of(gateway, session).WriteFile(chunks(), timeout=10)
    assert session.execute("print(open('data/in.csv').read(), end='')").stdout == "a,b\n1,2\n"


def test_a_killed_agent_makes_the_sandbox_dead_with_a_clear_error(
        gateway: Gateway, session: sandcell.Session) -> None:
    pid = agent_of(gateway, session).Health(pb.HealthRequest(), timeout=10).pid
    # the kernel may die before this cell's reply is sent: then the cell already says so
    with contextlib.suppress(sandcell.SandboxError):
        session.execute(f"import os, signal; os.kill({pid}, signal.SIGKILL)", timeout=30)

    def dead() -> bool:
        # a sandbox dying under a cell says so in the stream (SandboxError); one already
        # known dead (the kill's own cell saw it die) refuses the cell with 409 (ConflictError)
        try:
            session.execute("1+1", timeout=30)
        except (sandcell.SandboxError, sandcell.ConflictError) as exc:
            assert exc.code == "kernel_died"
            assert "sandbox agent stopped (killed by signal 9)" in str(exc)
            return True
        return False

    wait_for(dead, 30, "the sandbox to be dead after its agent was killed")

