"""Commands running in a sandbox, through its agent: each one's events, kept for any number of
readers from its start, and the sandbox's table of them.

A command's events have the execution stream's shape (``seq``, ``msg_type``, ``content``):
``started``, then ``stream`` (``name`` stdout/stderr, ``text``) as output comes, maybe a
``timeout``, then ``exit`` (``exit_code``; -N: killed by signal N), or a ``gateway_error``
when the gateway could not follow it to its end. Output past the cap is dropped behind the
same marker a cell's gets (:class:`cells.OutputBudget`).

Example::

    command = await launch(agent, CommandSpec.shell("ls -la"), limit=32 << 20)
    table.add(command)
    async for event in command.log.events():
        print(event["msg_type"], event["content"])
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import dataclasses
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

import grpc
from sandcell_agent._proto import sandbox_pb2 as pb

from .agent import AgentConnection, agent_errors
from .cells import OutputBudget
from .errors import GatewayError, NotFound, TooManyRequests
from .wire import iso_time, new_command_id

Event = dict[str, Any]
PIECE = 64 << 10  # stream text is merged into pieces of up to this many bytes for replay
# Pieces a log keeps at most: output in tiny alternating stdout/stderr writes would otherwise
# cost a dict per write; past it the rest counts as over the cap.
MAX_PIECES = 20_000
KILL_GRACE = 5.0  # seconds a killed command's group has to go before the gateway gives up on it
SHELL = ("/bin/bash", "-c")
TRUNCATED = "the rest of this command's output is dropped"


@dataclasses.dataclass(frozen=True)
class CommandSpec:
    """What to run: ``argv`` in ``cwd`` with ``env`` added, stopped after ``timeout`` s."""

    argv: tuple[str, ...]
    command: str  # what the user asked for, as shown back (the shell line or the argv)
    cwd: str = ""
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    timeout: float | None = None
    stdin: bool = False
    background: bool = False

    @classmethod
    def shell(cls, command: str, **options: Any) -> CommandSpec:
        """``command`` run by ``bash -c``."""
        return cls((*SHELL, command), command, **options)


@dataclasses.dataclass
class _Piece:
    name: str  # stdout or stderr
    data: bytearray  # UTF-8 text, cut only between characters


class CommandLog:
    """A command's events from its start, for readers arriving at any time.

    Stream text is merged into pieces, so a command that writes a byte at a time costs no
    more to keep than one writing in blocks; a reader still gets each write as it comes.

    >>> async def demo():
    ...     log = CommandLog()
    ...     log.add_text("stdout", "a"); log.add_text("stdout", "b")
    ...     log.add({"msg_type": "exit", "content": {"exit_code": 0}}); log.finish()
    ...     return [(e["msg_type"], e["content"]) async for e in log.events()]
    >>> asyncio.run(demo())
    [('stream', {'name': 'stdout', 'text': 'ab'}), ('exit', {'exit_code': 0})]
    """

    def __init__(self) -> None:
        self.entries: list[Event | _Piece] = []
        self.finished = False
        self._changed = asyncio.Event()

    @property
    def full(self) -> bool:
        return len(self.entries) >= MAX_PIECES

    def add(self, event: Event) -> None:
        if not self.finished:
            self.entries.append(event)
            self._notify()

    def add_text(self, name: str, text: str) -> None:
        if self.finished or not text:
            return
        last = self.entries[-1] if self.entries else None
        data = text.encode("utf-8", "surrogatepass")
        if isinstance(last, _Piece) and last.name == name and len(last.data) < PIECE:
            last.data += data
        else:
            self.entries.append(_Piece(name, bytearray(data)))
        self._notify()

    def finish(self) -> None:
        self.finished = True
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def snapshot(self) -> list[Event]:
        """The events so far, without waiting (each piece of text one ``stream`` event)."""
        return [_stream(seq, e.name, e.data.decode("utf-8", "surrogatepass"))
                if isinstance(e, _Piece) else {"seq": seq, **e}
                for seq, e in enumerate(self.entries)]

    async def events(self) -> AsyncIterator[Event]:
        """Every event from the start, numbered, then each as it comes, until the end."""
        seq = index = offset = 0
        while True:
            changed = self._changed
            while index < len(self.entries):
                entry = self.entries[index]
                if isinstance(entry, _Piece):
                    if offset < len(entry.data):
                        text = bytes(entry.data[offset:]).decode("utf-8", "surrogatepass")
                        offset = len(entry.data)
                        yield _stream(seq, entry.name, text)
                        seq += 1
                    if index == len(self.entries) - 1 and not self.finished:
                        break  # the last piece may still grow
                else:
                    yield {"seq": seq, **entry}
                    seq += 1
                index, offset = index + 1, 0
            else:
                if self.finished:
                    return
            await changed.wait()


def _stream(seq: int, name: str, text: str) -> Event:
    return {"seq": seq, "msg_type": "stream", "content": {"name": name, "text": text}}


def _event(msg_type: str, **content: Any) -> Event:
    return {"msg_type": msg_type, "content": content}


Signaller = Callable[[int], Coroutine[Any, Any, None]]


class Command:
    """One command: its spec, its log, and the task relaying what the agent reports."""

    def __init__(self, command_id: str, spec: CommandSpec, pid: int, limit: int,
                 send_signal: Signaller) -> None:
        self.id, self.spec, self.pid = command_id, spec, pid
        self.started_at = time.time()
        self.finished_at: float | None = None
        self.exit_code: int | None = None
        self.log = CommandLog()
        self.send_signal = send_signal
        self._budget = OutputBudget(limit, TRUNCATED)
        self._decoders = {name: codecs.getincrementaldecoder("utf-8")("replace")
                          for name in ("stdout", "stderr")}
        self._task: asyncio.Task[None] | None = None
        self._call: Any = None
        self._when_done: list[Callable[[Command], None]] = []
        self.log.add(_event("started", id=command_id, pid=pid))

    @property
    def running(self) -> bool:
        return not self.log.finished

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "command": self.spec.command, "cwd": self.spec.cwd or ".",
                "pid": self.pid, "background": self.spec.background,
                "state": "running" if self.running else "finished", "exit_code": self.exit_code,
                "started_at": iso_time(self.started_at),
                "finished_at": None if self.finished_at is None else iso_time(self.finished_at)}

    def follow(self, call: Any) -> None:
        """Relay ``call`` (the agent's Start stream, past its Started) into the log."""
        self._call = call
        self._task = asyncio.ensure_future(self._follow(call))

    async def _follow(self, call: Any) -> None:
        # the reader is never cancelled by the timeout: cancelling a read cancels the call,
        # and the exit code of the killed group would be lost
        reader = asyncio.ensure_future(self._relay(call))
        try:
            done, _ = await asyncio.wait({reader}, timeout=self.spec.timeout)
            if not done:
                self.log.add(_event("timeout", timeout=self.spec.timeout))
                await self._kill_quietly()
                done, _ = await asyncio.wait({reader}, timeout=KILL_GRACE)
            if not done:
                self._fail("command_unresponsive", "the command's process group did not end "
                                                   f"within {KILL_GRACE:g} s of SIGKILL")
            else:
                self._check(reader)
        finally:
            reader.cancel()
            call.cancel()  # the agent kills what is left of the group
            self._end()

    def _check(self, reader: asyncio.Future[None]) -> None:
        """A relay that ended without the exit: the agent (or its channel) went away."""
        if reader.cancelled():
            self._fail("kernel_died", "the call to the sandbox agent was cancelled")
        elif isinstance(reader.exception(), grpc.aio.AioRpcError):
            error: Any = reader.exception()
            self._fail("kernel_died", "the sandbox agent stopped following the command "
                                      f"({error.details()})")
        else:
            reader.result()

    async def _relay(self, call: Any) -> None:
        while (message := await call.read()) is not grpc.aio.EOF:
            kind = message.WhichOneof("kind")
            if kind in ("stdout", "stderr"):
                self._output(kind, self._decoders[kind].decode(getattr(message, kind).data))
            elif kind == "exited":
                for name, decoder in self._decoders.items():
                    self._output(name, decoder.decode(b"", final=True))
                self.exit_code = message.exited.exit_code
                self.log.add(_event("exit", exit_code=self.exit_code))
                return

    def _output(self, name: str, text: str) -> None:
        if not text:
            return
        if self.log.full and not self._budget.truncated:
            self._budget.limit = self._budget.used  # past MAX_PIECES: as if past the cap
        message = {"msg_type": "stream", "content": {"name": name, "text": text}}
        for kept in self._budget.admit(message):
            self.log.add_text(kept["content"]["name"], kept["content"]["text"])

    async def _kill_quietly(self) -> None:
        try:
            await self.send_signal(signal.SIGKILL)
        except (GatewayError, grpc.aio.AioRpcError):
            pass  # already gone; cancelling the call kills the group anyway

    def _fail(self, code: str, message: str) -> None:
        self.log.add(_event("gateway_error", code=code, message=message))

    def when_done(self, callback: Callable[[Command], None]) -> None:
        """Call ``callback(self)`` once it has finished (its log is complete then); at once
        if it already has."""
        if self.finished_at is not None:
            callback(self)
        else:
            self._when_done.append(callback)

    def _end(self) -> None:
        if self.finished_at is not None:
            return
        self.finished_at = time.time()
        self.log.finish()
        for callback in self._when_done:
            callback(self)

    def close(self, reason: str, code: str = "sandbox_closed") -> None:
        """Stop following it: readers are told why, the agent kills the group (call cancelled)."""
        if self.running:
            self._fail(code, reason)
            self._end()
        if self._call is not None:
            self._call.cancel()  # now: the loop may not run the task again (shutdown)
        if self._task is not None:
            self._task.cancel()


class CommandTable:
    """A sandbox's commands by id: the running ones, and the last ``keep`` finished ones."""

    def __init__(self, max_running: int = 32, keep: int = 32) -> None:
        self.max_running, self.keep = max_running, keep
        self._commands: dict[str, Command] = {}
        self._starting = 0
        self.closed = ""

    @contextlib.contextmanager
    def reserve(self) -> Iterator[None]:
        """Hold a place for a command being started; 429 ``too_many_commands`` when
        ``max_running`` already run or start (the agent serves a bounded number of calls at
        once, and file calls need some too). Starts in flight count, so they cannot overshoot."""
        running = sum(1 for c in self._commands.values() if c.running)
        if running + self._starting >= self.max_running:
            raise TooManyRequests(f"{self.max_running} commands already run in this sandbox: "
                                  "wait for one to end, or kill one", retry_after=1,
                                  code="too_many_commands")
        self._starting += 1
        try:
            yield
        finally:
            self._starting -= 1

    def add(self, command: Command) -> None:
        if self.closed:
            command.close(self.closed)
        self._commands[command.id] = command
        finished = [c for c in self._commands.values() if not c.running]
        for old in finished[:max(0, len(finished) - self.keep)]:
            del self._commands[old.id]

    def get(self, command_id: str) -> Command:
        command = self._commands.get(command_id)
        if command is None:
            raise NotFound(f"no command {command_id!r} in this sandbox (the last {self.keep} "
                           "finished ones are kept)", code="command_not_found")
        return command

    def list(self) -> list[Command]:
        return list(self._commands.values())

    def close(self, reason: str) -> None:
        """Kill every running command (the sandbox is closed)."""
        self.closed = reason
        for command in self._commands.values():
            command.close(reason)


async def launch(agent: AgentConnection, spec: CommandSpec, limit: int,
                 extra_env: dict[str, str] | None = None, sandbox_id: str = "") -> Command:
    """Start ``spec`` through ``agent`` (``extra_env`` under the spec's own); the agent's
    refusal (a bad cwd, a missing program) raises here, before any event, as the matching
    gateway error."""
    command_id = new_command_id()
    call = agent.stub.Start(pb.StartRequest(
        args=list(spec.argv), cwd=spec.cwd, env={**(extra_env or {}), **spec.env},
        process_id=command_id, stdin=spec.stdin))
    try:
        with agent_errors(sandbox_id):
            first: Any = await call.read()
    except BaseException:
        call.cancel()
        raise
    if first is grpc.aio.EOF or first.WhichOneof("kind") != "started":
        call.cancel()
        raise GatewayError("sandbox agent: a command began without Started", code="agent_error")

    async def send_signal(signum: int) -> None:
        with agent_errors(sandbox_id):
            await agent.stub.Signal(pb.SignalRequest(process_id=command_id, signal=signum))

    command = Command(command_id, spec, first.started.pid, limit, send_signal)
    command.follow(call)
    return command
