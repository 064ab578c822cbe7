"""``session.commands``: shell commands in the sandbox (``AsyncCommands``), and one running in
the background (``AsyncCommandHandle``).

Edit ``sdk/sandcell/_async/_commands.py``; ``scripts/unasync.py`` writes its sync twin
``sdk/sandcell/_sync/_commands.py`` from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import httpx

from .._agent_models import (
    CommandAccumulator,
    CommandCallbacks,
    CommandEvent,
    CommandResult,
    command_body,
    command_path,
    parse_command_line,
)
from .._core import json_object
from .._exceptions import ConflictError
from ._lines import AsyncResponseLines

if TYPE_CHECKING:
    from ._client import AsyncGatewayAPI

__all__ = ["AsyncCommandHandle", "AsyncCommands"]

Output = Callable[[str], object]


class AsyncCommandHandle:
    """A command running in the sandbox: iterate its events, ``wait()`` for its result.

    Iterating yields ``CommandStdout``, ``CommandStderr`` and, last, ``CommandExit``, from the
    command's start (output it wrote before you looked is not lost). Leaving the ``with``
    block stops reading, not the command: ``kill()`` does that.

    Example::

        handle = await session.commands.start("python train.py", cwd="work", env={"X": "1"})
        await handle.send_stdin("y\\n")
        async for event in handle:
            if isinstance(event, sandcell.CommandStdout):
                print(event.text, end="")
        result = await handle.wait()   # CommandResult(exit_code=0, stdout=..., stderr=...)
    """

    def __init__(
        self,
        api: AsyncGatewayAPI,
        sandbox_id: str,
        request: httpx.Request,
        *,
        command_id: str = "",
        pid: int | None = None,
        timeout: float | None = None,
        callbacks: CommandCallbacks | None = None,
    ) -> None:
        self._api = api
        self._sandbox_id = sandbox_id
        self._lines = AsyncResponseLines(api, request)
        self._accumulator = CommandAccumulator(timeout)
        self._accumulator.command.id = command_id
        self._accumulator.pid = pid
        self._callbacks = callbacks or CommandCallbacks()

    @property
    def id(self) -> str:
        """The command's id, e.g. ``cmd_5f0c...``."""
        return self._accumulator.command.id

    @property
    def pid(self) -> int | None:
        """Its process id inside the sandbox."""
        return self._accumulator.pid

    async def wait(self) -> CommandResult:
        """Read the rest of its events and return its ``CommandResult`` (a non-zero
        ``exit_code`` is data); ``sandcell.TimeoutError`` if its timeout killed it,
        ``SandboxError`` if the gateway could not follow it to its end."""
        async for _ in self:
            pass
        return self._accumulator.result()

    async def kill(self) -> bool:
        """SIGKILL its whole process group; False if it had already finished."""
        return await self.send_signal("SIGKILL")

    async def send_signal(self, signal: str | int) -> bool:
        """Send ``signal`` (``"SIGTERM"``, ``15``, ...) to its process group; False if it had
        already finished."""
        try:
            await self._api.request("POST", self._path("signal"), json={"signal": signal})
        except ConflictError as exc:
            if exc.code == "command_finished":
                return False
            raise
        return True

    async def send_stdin(self, data: str | bytes) -> None:
        """Write ``data`` to its stdin (``commands.start`` keeps stdin open by default)."""
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        await self._api.request("POST", self._path("stdin"), json={"data": text})

    async def close_stdin(self) -> None:
        """Close its stdin: a command reading it sees the end of its input."""
        await self._api.request("POST", self._path("stdin"), json={"close": True})

    def _path(self, action: str) -> str:
        return command_path(self._sandbox_id, self.id, action)

    async def close(self) -> None:
        """Stop reading its events (the command runs on)."""
        await self._lines.close()

    def __aiter__(self) -> AsyncCommandHandle:
        return self

    async def __anext__(self) -> CommandEvent:
        while not self._lines.finished:
            line = await self._lines.next()
            wire = parse_command_line(line) if line is not None else None
            event = self._accumulator.apply(wire) if wire is not None else None
            if event is not None:
                self._callbacks.dispatch(event)
                return event
        raise StopAsyncIteration

    async def __aenter__(self) -> AsyncCommandHandle:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self._accumulator.command!r}>"


class AsyncCommands:
    """Shell commands in the sandbox, as the sandbox user, on the kernel's files.

    A string runs under ``bash -c``; a list is the program and its arguments. ``cwd`` is a
    workspace path, ``env`` is added to the sandbox's. A command that exits non-zero is data.

    Example::

        r = await session.commands.run("ls -la && python -c 'print(6*7)'", on_stdout=print, timeout=30)
        print(r.exit_code, r.stdout, r.stderr)
        handle = await session.commands.start("python train.py", cwd="work", env={"X": "1"})
        await handle.kill()
    """

    def __init__(self, api: AsyncGatewayAPI, sandbox_id: str) -> None:
        self._api = api
        self._sandbox_id = sandbox_id

    async def run(
        self,
        command: str | Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        on_stdout: Output | None = None,
        on_stderr: Output | None = None,
    ) -> CommandResult:
        """Run ``command`` to its end and return its ``CommandResult``; callbacks see its
        output as it comes. Past ``timeout`` seconds its whole process group is killed and
        ``sandcell.TimeoutError`` raised (with ``.command`` holding the output)."""
        body = command_body(command, cwd=cwd, env=env, timeout=timeout, stdin=False, background=False)
        request = self._api.build_request("POST", command_path(self._sandbox_id), json=body,
                                          timeout=self._api.timeout.for_execution(timeout))
        async with AsyncCommandHandle(self._api, self._sandbox_id, request, timeout=timeout,
                                      callbacks=CommandCallbacks(on_stdout, on_stderr)) as handle:
            return await handle.wait()

    async def start(
        self,
        command: str | Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        stdin: bool = True,
        on_stdout: Output | None = None,
        on_stderr: Output | None = None,
    ) -> AsyncCommandHandle:
        """Start ``command`` in the background and return its handle at once; ``stdin``
        keeps a pipe open for ``send_stdin`` (else stdin is ``/dev/null``)."""
        body = command_body(command, cwd=cwd, env=env, timeout=timeout, stdin=stdin, background=True)
        started = json_object(await self._api.request("POST", command_path(self._sandbox_id), json=body))
        command_id = str(started.get("id", ""))
        request = self._api.build_request("GET", command_path(self._sandbox_id, command_id, "events"),
                                          json=None, timeout=self._api.timeout.for_execution(None))
        pid = started.get("pid")
        return AsyncCommandHandle(self._api, self._sandbox_id, request, command_id=command_id,
                                  pid=pid if isinstance(pid, int) else None, timeout=timeout,
                                  callbacks=CommandCallbacks(on_stdout, on_stderr))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._sandbox_id}>"
