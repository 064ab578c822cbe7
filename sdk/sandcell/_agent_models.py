"""Files and commands (served by the sandbox's agent) without the I/O: ``FileInfo``, command events and results, the request
bodies and paths, and the fold of a command's events into a ``CommandResult``.

``session.files`` and ``session.commands`` (async and sync alike) use only these, so both
twins parse, accumulate and call back identically.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from ._core import sandbox_path
from ._exceptions import SandboxError, TimeoutError
from ._streaming import json_object

__all__ = [
    "CommandAccumulator",
    "CommandCallbacks",
    "CommandEvent",
    "CommandExit",
    "CommandResult",
    "CommandStderr",
    "CommandStdout",
    "FileInfo",
    "command_body",
    "command_path",
    "parse_command_line",
]


@dataclass(frozen=True)
class FileInfo:
    """A file or directory in a sandbox; ``path`` is workspace-relative when inside it.

    >>> info = FileInfo.from_json({"name": "in.csv", "path": "data/in.csv", "type": "file",
    ...                            "size": 8, "modified": 0.5})
    >>> info.is_file, info.size, info.modified.isoformat()
    (True, 8, '1970-01-01T00:00:00.500000+00:00')
    """

    name: str
    path: str
    type: str  # "file", "dir", "symlink" or "other"
    size: int
    modified: datetime

    @property
    def is_file(self) -> bool:
        return self.type == "file"

    @property
    def is_dir(self) -> bool:
        return self.type == "dir"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileInfo:
        modified = data.get("modified")
        stamp = float(modified) if isinstance(modified, (int, float)) else 0.0
        return cls(name=str(data.get("name", "")), path=str(data.get("path", "")),
                   type=str(data.get("type", "other")), size=int(data.get("size") or 0),
                   modified=datetime.fromtimestamp(stamp, UTC))


@dataclass(frozen=True)
class CommandStdout:
    """Text the command wrote to stdout, as it came.

    >>> CommandStdout("42\\n").text
    '42\\n'
    """

    text: str


@dataclass(frozen=True)
class CommandStderr:
    """Text the command wrote to stderr, as it came (also the gateway's truncation marker).

    >>> CommandStderr("oops\\n").text
    'oops\\n'
    """

    text: str


@dataclass(frozen=True)
class CommandExit:
    """The command ended: its exit code (``-9``: killed by SIGKILL). Always the last event.

    >>> CommandExit(0).exit_code
    0
    """

    exit_code: int


CommandEvent = CommandStdout | CommandStderr | CommandExit


@dataclass
class CommandResult:
    """What a command did. A non-zero ``exit_code`` is data, not an exception.

    >>> r = CommandResult(exit_code=1, stdout="", stderr="no such file\\n")
    >>> r.ok, r.exit_code
    (False, 1)
    """

    exit_code: int | None = None  # None while it runs (or if it ended without one)
    stdout: str = ""
    stderr: str = ""
    id: str = field(default="", repr=False)

    @property
    def ok(self) -> bool:
        """True when the command exited with 0."""
        return self.exit_code == 0


def command_path(sandbox_id: str, command_id: str | None = None, action: str | None = None) -> str:
    """The URL path of a sandbox's commands, one command, or one of its actions.

    >>> command_path("sbx_1"), command_path("sbx_1", "cmd_2", "events")
    ('/api/v1/sandboxes/sbx_1/commands', '/api/v1/sandboxes/sbx_1/commands/cmd_2/events')
    """
    path = sandbox_path(sandbox_id, "commands")
    if command_id is not None:
        path += "/" + quote(command_id, safe="")
    if action is not None:
        path += "/" + action
    return path


def command_body(command: str | Sequence[str], *, cwd: str | None, env: Mapping[str, str] | None,
                 timeout: float | None, stdin: bool, background: bool) -> dict[str, Any]:
    """The ``POST .../commands`` body: a string runs under bash, a sequence is the argv.

    >>> command_body("ls -la", cwd=None, env=None, timeout=30, stdin=False, background=False)
    {'command': 'ls -la', 'timeout': 30}
    >>> command_body(["python", "x.py"], cwd="w", env={"X": "1"}, timeout=None, stdin=True,
    ...              background=True)
    {'args': ['python', 'x.py'], 'cwd': 'w', 'env': {'X': '1'}, 'stdin': True, 'background': True}
    """
    body: dict[str, Any] = {"command": command} if isinstance(command, str) else {"args": list(command)}
    optional = {"cwd": cwd, "env": None if env is None else dict(env), "timeout": timeout}
    body.update({key: value for key, value in optional.items() if value is not None})
    body.update({key: True for key, value in (("stdin", stdin), ("background", background)) if value})
    return body


@dataclass(frozen=True)
class _Wire:
    msg_type: str
    content: dict[str, Any]


def parse_command_line(line: str) -> _Wire | None:
    """One NDJSON line of a command's stream; ``None`` for a blank line.

    >>> parse_command_line('{"seq": 0, "msg_type": "exit", "content": {"exit_code": 0}}')
    _Wire(msg_type='exit', content={'exit_code': 0})
    """
    if not line.strip():
        return None
    payload = json_object(line)
    content = payload.get("content")
    if not isinstance(content, dict):
        raise SandboxError("invalid_event", f"the gateway sent an event without content: {line[:200]!r}")
    return _Wire(str(payload.get("msg_type", "")), content)


class CommandAccumulator:
    """Folds a command's events into its ``CommandResult``; says which are the user's events.

    >>> acc = CommandAccumulator()
    >>> acc.apply(_Wire("started", {"id": "cmd_1", "pid": 7}))
    >>> acc.apply(_Wire("stream", {"name": "stdout", "text": "hi"}))
    CommandStdout(text='hi')
    >>> acc.apply(_Wire("exit", {"exit_code": 3}))
    CommandExit(exit_code=3)
    >>> acc.result()
    CommandResult(exit_code=3, stdout='hi', stderr='')
    """

    def __init__(self, timeout: float | None = None) -> None:
        self.command = CommandResult()
        self.pid: int | None = None
        self.finished = False
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._timeout = timeout
        self._timed_out = False
        self._error: tuple[str, str] | None = None

    def apply(self, wire: _Wire) -> CommandEvent | None:
        """Note one event; return what a user iterating the command sees, if anything."""
        content = wire.content
        if wire.msg_type == "started":
            self.command.id, self.pid = str(content.get("id", "")), _int(content.get("pid"))
        elif wire.msg_type == "stream":
            return self._stream(str(content.get("name")), str(content.get("text", "")))
        elif wire.msg_type == "exit":
            self.finished = True
            self.command.exit_code = _int(content.get("exit_code"))
            return CommandExit(self.command.exit_code if self.command.exit_code is not None else -1)
        elif wire.msg_type == "timeout":
            self._timed_out = True
        elif wire.msg_type == "gateway_error":
            self.finished = True
            self._error = (str(content.get("code", "")), str(content.get("message", "")))
        return None

    def _stream(self, name: str, text: str) -> CommandEvent:
        if name == "stderr":
            self._stderr.append(text)
            self.command.stderr = "".join(self._stderr)
            return CommandStderr(text)
        self._stdout.append(text)
        self.command.stdout = "".join(self._stdout)
        return CommandStdout(text)

    def result(self) -> CommandResult:
        """The finished ``CommandResult``; raises when the command did not end by itself."""
        if self._error is not None:
            code, message = self._error
            raise SandboxError(code, message, command=self.command)
        if self._timed_out:
            raise TimeoutError(self._timeout, command=self.command)
        if not self.finished:
            raise SandboxError("incomplete_stream", "the command's stream ended before its exit "
                               "(it was closed early, or the gateway went away)", command=self.command)
        return self.command


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class CommandCallbacks:
    """``on_stdout`` / ``on_stderr``: sugar over the command's events.

    >>> seen = []
    >>> CommandCallbacks(on_stdout=seen.append).dispatch(CommandStdout("hi"))
    >>> seen
    ['hi']
    """

    on_stdout: Callable[[str], object] | None = None
    on_stderr: Callable[[str], object] | None = None

    def dispatch(self, event: CommandEvent | None) -> None:
        if isinstance(event, CommandStdout) and self.on_stdout is not None:
            self.on_stdout(event.text)
        elif isinstance(event, CommandStderr) and self.on_stderr is not None:
            self.on_stderr(event.text)
