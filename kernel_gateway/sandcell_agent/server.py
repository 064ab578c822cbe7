"""``python -m sandcell_agent.server``: serve the agent on a Unix socket until signalled.

    python -m sandcell_agent.server --socket /conn/agent.sock --workspace /home/sandbox
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NoReturn, TypeVar

import grpc

from ._proto import sandbox_pb2 as pb
from ._proto import sandbox_pb2_grpc as rpc
from .errors import ERROR_KEY, AgentError
from .files import Files
from .paths import Roots
from .processes import Processes

T = TypeVar("T")
MAX_MESSAGE = 8 << 20  # bytes; writes arrive in chunks far smaller


class Agent(rpc.SandboxAgentServicer):
    """Thin servicer: each call goes to Files or Processes; AgentError -> a status code."""

    def __init__(self, roots: Roots) -> None:
        self.roots = roots
        self.files = Files(roots)
        self.processes = Processes(roots)

    def Health(self, request: pb.HealthRequest, context: grpc.ServicerContext) -> pb.HealthReply:
        return pb.HealthReply(pid=os.getpid(), uid=os.getuid(), workspace=self.roots.workspace)

    def ReadFile(self, request: pb.PathRequest, context: grpc.ServicerContext
                 ) -> Iterator[pb.ReadChunk]:
        return _stream(context, lambda: self.files.read(request.path))

    def WriteFile(self, request_iterator: Iterable[pb.WriteChunk],
                  context: grpc.ServicerContext) -> pb.FileInfo:
        requests = iter(request_iterator)
        try:
            return self.files.write(requests)
        except AgentError as exc:
            # Read the rest first: a refusal while the client is still sending reaches it
            # as its transport's "Internal error", not as this status (grpc aio).
            for _ in requests:
                pass
            _abort(context, exc)

    def ListDir(self, request: pb.PathRequest, context: grpc.ServicerContext) -> pb.ListDirReply:
        return _unary(context, lambda: self.files.list(request.path))

    def Stat(self, request: pb.PathRequest, context: grpc.ServicerContext) -> pb.FileInfo:
        return _unary(context, lambda: self.files.stat(request.path))

    def Remove(self, request: pb.RemoveRequest, context: grpc.ServicerContext) -> pb.RemoveReply:
        _unary(context, lambda: self.files.remove(request.path, request.recursive))
        return pb.RemoveReply()

    def MakeDir(self, request: pb.PathRequest, context: grpc.ServicerContext) -> pb.FileInfo:
        return _unary(context, lambda: self.files.make_dir(request.path))

    def Rename(self, request: pb.RenameRequest, context: grpc.ServicerContext) -> pb.FileInfo:
        return _unary(context, lambda: self.files.rename(
            request.source, request.destination, request.overwrite))

    def Start(self, request: pb.StartRequest, context: grpc.ServicerContext
              ) -> Iterator[pb.ProcessEvent]:
        return _stream(context, lambda: self.processes.start(request, context))

    def WriteStdin(self, request: pb.StdinRequest, context: grpc.ServicerContext
                   ) -> pb.StdinReply:
        _unary(context, lambda: self.processes.write_stdin(request))
        return pb.StdinReply()

    def Signal(self, request: pb.SignalRequest, context: grpc.ServicerContext) -> pb.SignalReply:
        _unary(context, lambda: self.processes.signal(request))
        return pb.SignalReply()


def _abort(context: grpc.ServicerContext, exc: AgentError) -> NoReturn:
    context.set_trailing_metadata(((ERROR_KEY, exc.code),))
    context.abort(exc.status, exc.message)


def _unary(context: grpc.ServicerContext, call: Callable[[], T]) -> T:
    try:
        return call()
    except AgentError as exc:
        _abort(context, exc)


def _stream(context: grpc.ServicerContext, call: Callable[[], Iterator[T]]) -> Iterator[T]:
    try:
        yield from call()
    except AgentError as exc:
        _abort(context, exc)


def serve(socket_path: str, agent: Agent) -> grpc.Server:
    """Start serving on ``unix:socket_path`` (a stale socket file is replaced)."""
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    # One thread per call in flight; a process stream holds one for its lifetime.
    server = grpc.server(ThreadPoolExecutor(max_workers=64, thread_name_prefix="agent"),
                         options=[("grpc.max_receive_message_length", MAX_MESSAGE),
                                  ("grpc.max_send_message_length", MAX_MESSAGE)])
    rpc.add_SandboxAgentServicer_to_server(agent, server)
    server.add_insecure_port(f"unix:{socket_path}")
    server.start()
    return server


def main(argv: list[str] | None = None) -> int:
    import argparse  # here: the kernel launcher calls run() and skips its import (~20 ms)

    parser = argparse.ArgumentParser(description="Sandcell's in-sandbox agent")
    parser.add_argument("--socket", default="/conn/agent.sock")
    parser.add_argument("--workspace", default=os.environ.get("HOME", "/home/sandbox"))
    parser.add_argument("--tmp", default="/tmp")
    args = parser.parse_args(argv)
    return run(args.socket, args.workspace, args.tmp)


def run(socket_path: str, workspace: str, tmp: str) -> int:
    """Serve until SIGTERM or SIGINT, then kill the processes started and stop."""
    agent = Agent(Roots(workspace, tmp))
    server = serve(socket_path, agent)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    agent.processes.kill_all()
    server.stop(grace=1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
