"""The gateway's side of the sandbox agent: a gRPC channel to ``/conn/agent.sock``.

Each sandbox container runs the agent (``sandcell_agent``, forked by the image's kernel
launcher) beside its kernel. The gateway reaches it over the Unix socket in the sandbox's
connection directory, as it reaches the kernel's ipc sockets: no network, no ``docker exec``.

Example::

    agent = AgentConnection(handle.conn_dir)
    health = await agent.wait_ready(deadline=30)   # proven: the agent answered Health
    agent.close()
    agent_exit_reason(handle.conn_dir)  # after the container exited: why the agent stopped
    with agent_errors(sandbox_id):      # the agent's refusals as gateway errors, mapped here only
        await agent.stub.Stat(...)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
from sandcell_agent._proto import sandbox_pb2 as pb
from sandcell_agent._proto import sandbox_pb2_grpc as rpc

from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    GatewayError,
    InsufficientStorage,
    KernelDied,
    NotFound,
    PayloadTooLarge,
)

SOCKET_NAME = "agent.sock"
EXIT_NAME = "agent.exit"  # written by the launcher when the agent stops (sandcell_launcher.py)
MAX_MESSAGE = 8 << 20  # bytes, as the agent's own limit
# The channel is made as the container starts, before the agent listens: its first connects
# fail, and grpc then waits its default reconnect backoff (1 s, then 1.6x) before the next, so
# a sandbox was ready a second late, and a pool refilled at a third of its speed. A local
# socket is cheap to retry: every 10 ms, at most 100 ms apart.
CHANNEL_OPTIONS = (("grpc.max_receive_message_length", MAX_MESSAGE),
                   ("grpc.max_send_message_length", MAX_MESSAGE),
                   ("grpc.initial_reconnect_backoff_ms", 10),
                   ("grpc.max_reconnect_backoff_ms", 100))
SANDBOX_UID = 1000  # the image's sandbox user; an agent running as anyone else is refused


class AgentNotReady(RuntimeError):
    """The agent did not answer Health in time, or answered as the wrong user."""


class AgentConnection:
    """One channel to one sandbox's agent; the stub is public for the services that use it."""

    def __init__(self, conn_dir: Path) -> None:
        self.conn_dir = conn_dir
        self.channel = grpc.aio.insecure_channel(f"unix:{conn_dir / SOCKET_NAME}",
                                                 options=CHANNEL_OPTIONS)
        self.stub = rpc.SandboxAgentStub(self.channel)

    async def wait_ready(self, deadline: float) -> pb.HealthReply:
        """Return the agent's Health reply once it answers (it may not be listening yet)."""
        give_up = time.monotonic() + deadline
        while True:
            left = give_up - time.monotonic()
            if left <= 0:
                raise AgentNotReady(f"the sandbox agent did not answer within {deadline:g} s")
            try:
                # wait_for_ready: until the socket exists and accepts, within the timeout
                reply: pb.HealthReply = await self.stub.Health(
                    pb.HealthRequest(), timeout=min(left, 5.0), wait_for_ready=True)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
                    continue  # not listening yet: the channel backs off between connects
                raise AgentNotReady(f"the sandbox agent failed Health: {exc.details()}") from exc
            if reply.uid != SANDBOX_UID:
                raise AgentNotReady(f"the sandbox agent runs as uid {reply.uid}, "
                                    f"not the sandbox user ({SANDBOX_UID})")
            return reply

    def close(self) -> None:
        """Drop the channel without waiting (the container goes with it)."""
        asyncio.ensure_future(self.channel.close())


def agent_exit_reason(conn_dir: Path) -> str | None:
    """Why the agent stopped, if the launcher said so (the container has then exited)."""
    try:
        why = (conn_dir / EXIT_NAME).read_text(errors="replace").strip()[:200]
    except OSError:
        return None
    return f"its sandbox agent stopped ({why})" if why else "its sandbox agent stopped"


# the agent's error code (its trailing metadata) -> the gateway's error class
_ERRORS: dict[str, type[GatewayError]] = {
    "invalid_path": BadRequest, "invalid_request": BadRequest, "wrong_file_type": BadRequest,
    "cross_device": BadRequest, "file_not_found": NotFound, "file_exists": Conflict,
    "directory_not_empty": Conflict, "permission_denied": Forbidden,
    "file_too_large": PayloadTooLarge, "insufficient_storage": InsufficientStorage,
    "invalid_signal": BadRequest, "stdin_closed": Conflict, "process_not_found": Conflict,
}


@contextlib.contextmanager
def agent_errors(sandbox_id: str) -> Iterator[None]:
    """An agent's refusal as the matching gateway error; an unreachable agent as a dead one."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        code = str(dict(exc.trailing_metadata() or ()).get("sandcell-error", ""))
        if code in _ERRORS:
            raise _ERRORS[code](exc.details() or code, code=code) from exc
        if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
            raise KernelDied(f"sandbox {sandbox_id}'s agent is unreachable "
                             f"({exc.details()})") from exc
        raise GatewayError(f"sandbox agent: {exc.details()}", code="agent_error") from exc
