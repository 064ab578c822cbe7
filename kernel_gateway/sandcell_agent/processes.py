"""Processes the agent starts: each in a session (and process group) of its own, its output
streamed as it comes, killed with its whole group when its caller goes away."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import grpc

from ._proto import sandbox_pb2 as pb
from .errors import AgentError, from_os_error
from .paths import InvalidPath, Roots

READ_SIZE = 64 * 1024
# Chunks buffered per process before its readers block: a flooding process then waits on
# its pipe instead of filling the agent's memory.
QUEUE_CHUNKS = 64
# After the process exits, how long its pipes may stay open (a child it left running holds
# them) before the exit is reported anyway.
PIPE_GRACE = 0.5
REAP_WAIT = 5.0  # seconds a SIGKILLed leader may take to be reaped (it takes milliseconds)


class Process:
    """One started process and the queue its reader threads fill."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.events: queue.Queue[pb.ProcessEvent | None] = queue.Queue(QUEUE_CHUNKS)
        self.open_pipes = 2
        self.stop = threading.Event()  # the stream ended: readers drop what they read

    def pump(self, fd: int, kind: str) -> None:
        try:
            while data := os.read(fd, READ_SIZE):
                while not self.stop.is_set():
                    with contextlib.suppress(queue.Full):
                        output = pb.Output(data=data)
                        event = (pb.ProcessEvent(stdout=output) if kind == "stdout"
                                 else pb.ProcessEvent(stderr=output))
                        self.events.put(event, timeout=0.2)
                        break
        except OSError:
            pass
        finally:
            os.close(fd)
            self._put(None)

    def _put(self, item: pb.ProcessEvent | None) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(queue.Full):
                self.events.put(item, timeout=0.2)
                return

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def end(self) -> None:
        """The call ended: kill what is left of the group, and reap the leader (a cancelled
        stream never reaches its wait, and the agent would keep the zombie)."""
        self.kill_group()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=REAP_WAIT)


class Processes:
    """The agent's process table, by the caller's process ids."""

    def __init__(self, roots: Roots) -> None:
        self.roots = roots
        self._table: dict[str, Process] = {}
        self._lock = threading.Lock()

    def start(self, request: pb.StartRequest, context: grpc.ServicerContext
              ) -> Iterator[pb.ProcessEvent]:
        process = self._spawn(request)
        context.add_callback(process.end)  # the call ended (or its caller left): the group goes
        with self._lock:
            self._table[request.process_id] = process
        try:
            yield pb.ProcessEvent(started=pb.Started(pid=process.popen.pid))
            yield from self._stream(process)
        finally:
            process.stop.set()
            with self._lock:
                self._table.pop(request.process_id, None)

    def _stream(self, process: Process) -> Iterator[pb.ProcessEvent]:
        exited_at = None  # a child left running may hold the pipes open after the exit
        while process.open_pipes:
            try:
                event = process.events.get(timeout=0.1)
            except queue.Empty:
                if process.popen.poll() is None:
                    continue
                exited_at = exited_at or time.monotonic()
                if time.monotonic() - exited_at > PIPE_GRACE:
                    break
                continue
            if event is None:
                process.open_pipes -= 1
            else:
                yield event
        yield pb.ProcessEvent(exited=pb.Exited(exit_code=process.popen.wait()))

    def _spawn(self, request: pb.StartRequest) -> Process:
        argv = list(request.args) or ["/bin/sh", "-c", request.command]
        env = {**os.environ, **dict(request.env)}
        try:
            resolved = self.roots.check(request.cwd or ".")
            with self.roots.open_dir(resolved) as cwd_fd:
                # the child changes into the directory by descriptor: no path to race
                popen = subprocess.Popen(
                    argv, cwd=f"/proc/self/fd/{cwd_fd}", pass_fds=(cwd_fd,), env=env,
                    stdin=subprocess.PIPE if request.stdin else subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except InvalidPath as exc:
            raise AgentError(grpc.StatusCode.INVALID_ARGUMENT, "invalid_path", str(exc)) from exc
        except OSError as exc:
            raise from_os_error(exc, request.cwd or argv[0]) from exc
        process = Process(popen)
        for pipe, kind in ((popen.stdout, "stdout"), (popen.stderr, "stderr")):
            assert pipe is not None
            fd = os.dup(pipe.fileno())
            pipe.close()
            threading.Thread(target=process.pump, args=(fd, kind), daemon=True).start()
        return process

    def _get(self, process_id: str) -> Process:
        with self._lock:
            process = self._table.get(process_id)
        if process is None:
            raise AgentError(grpc.StatusCode.NOT_FOUND, "process_not_found",
                             f"no running process {process_id!r}")
        return process

    def write_stdin(self, request: pb.StdinRequest) -> None:
        process = self._get(request.process_id)
        stdin = process.popen.stdin
        if stdin is None:
            raise AgentError(grpc.StatusCode.FAILED_PRECONDITION, "stdin_closed",
                             "the process was started without stdin")
        try:
            if request.data:
                stdin.write(request.data)
                stdin.flush()
            if request.close:
                stdin.close()
        except (BrokenPipeError, ValueError) as exc:
            raise AgentError(grpc.StatusCode.FAILED_PRECONDITION, "stdin_closed",
                             "the process's stdin is closed") from exc

    def signal(self, request: pb.SignalRequest) -> None:
        if request.signal not in signal.valid_signals():
            raise AgentError(grpc.StatusCode.INVALID_ARGUMENT, "invalid_signal",
                             f"{request.signal} is not a signal")
        self._get(request.process_id).kill_group(request.signal)

    def kill_all(self) -> None:
        with self._lock:
            for process in self._table.values():
                process.kill_group()
