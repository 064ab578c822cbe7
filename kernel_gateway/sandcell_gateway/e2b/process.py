"""envd's ``process.Process`` service over :class:`CommandService`: messages in proto JSON.

A process is named by its pid (the agent's, inside the sandbox); Sandcell names commands
``cmd_...``, so a pid is looked up among the sandbox's running commands. The SDK runs every
command as ``/bin/bash -l -c CMD``; it runs here as ``bash -c CMD`` (not a login shell:
Debian's ``/etc/profile`` resets ``PATH`` and would hide the sandbox's Python), in the
sandbox's environment, as the sandbox user whatever ``user`` asks (docs/e2b.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from collections.abc import AsyncIterator
from typing import Any

from ..command_service import CommandService
from ..commands import Command, CommandSpec
from ..commands_handlers import command_spec
from ..errors import BadRequest
from ..tenants import Tenant
from ..validation import ENV_NAME, MAX_SECONDS
from .connect import ConnectError, b64, bytes_field, field, object_field, text_field
from .models import e2b_path, sandcell_path

Message = dict[str, Any]
KEEPALIVE: Message = {"event": {"keepalive": {}}}
_SIGNALS = {"SIGNAL_SIGKILL": signal.SIGKILL, "SIGNAL_SIGTERM": signal.SIGTERM,
            9: signal.SIGKILL, 15: signal.SIGTERM}


@dataclasses.dataclass
class ProcessCall:
    """One call's context: whose sandbox, and the command service it goes through."""

    commands: CommandService
    sandbox_id: str
    tenant: Tenant
    timeout: float | None = None  # the call's Connect-Timeout-Ms, in seconds
    keepalive: float = 50.0  # seconds of silence before a keepalive event


def start_spec(message: Message, timeout: float | None) -> CommandSpec:
    """A ``StartRequest`` as the command Sandcell runs (checked as the REST route checks it)."""
    process = object_field(message, "process")
    if field(message, "pty"):
        raise ConnectError("unimplemented", "Sandcell has no PTY (docs/e2b.md)")
    cmd, args = text_field(process, "cmd"), field(process, "args", [])
    envs = field(process, "envs", {})
    if not cmd or not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ConnectError("invalid_argument", "process.cmd must name a program and "
                                               "process.args be a list of strings")
    if not isinstance(envs, dict) or not all(isinstance(v, str) and ENV_NAME.match(k)
                                             for k, v in envs.items()):
        raise ConnectError("invalid_argument", "process.envs must map variable names "
                                               "to strings")
    cwd = sandcell_path(text_field(process, "cwd"))
    body: dict[str, Any] = {"cwd": "" if cwd == "." else cwd, "env": envs,
                            "stdin": bool(field(message, "stdin", False)),
                            "timeout": timeout and min(timeout, MAX_SECONDS)}
    if cmd in ("/bin/bash", "bash") and args[:2] == ["-l", "-c"] and len(args) == 3:
        body["command"] = args[2]
    else:
        body["args"] = [cmd, *args]
    try:
        return command_spec(body)
    except BadRequest as exc:
        raise ConnectError("invalid_argument", exc.message) from None


async def start(call: ProcessCall, message: Message) -> AsyncIterator[Message]:
    spec = start_spec(message, call.timeout)
    command = await call.commands.start(call.sandbox_id, call.tenant, spec)
    async for event in events(call, command):
        yield event


async def connect(call: ProcessCall, message: Message) -> AsyncIterator[Message]:
    """A running command's events: all of them from its start (envd sends only new ones)."""
    async for event in events(call, running(call, message)):
        yield event


async def events(call: ProcessCall, command: Command) -> AsyncIterator[Message]:
    """The command's log as ``ProcessEvent`` s (keepalives in its silences), to its end."""
    async for event in with_keepalive(command.log.events(), call.keepalive):
        if event is None:
            yield KEEPALIVE
            continue
        call.commands.touch(call.sandbox_id)
        message = process_event(event)
        if message is not None:
            yield message


def process_event(event: dict[str, Any]) -> Message | None:
    """One Sandcell command event as envd's; a timeout or a lost command as a Connect error.

    >>> process_event({"msg_type": "exit", "content": {"exit_code": -9}})
    {'event': {'end': {'exitCode': -1, 'exited': False, 'status': 'signal: SIGKILL'}}}
    """
    kind, content = event["msg_type"], event["content"]
    if kind == "started":
        return {"event": {"start": {"pid": content["pid"]}}}
    if kind == "stream":
        data = content["text"].encode("utf-8", "surrogatepass")
        return {"event": {"data": {content["name"]: b64(data)}}}
    if kind == "exit":
        code = content["exit_code"]
        if code >= 0:
            return {"event": {"end": {"exitCode": code, "exited": True,
                                      "status": f"exit status {code}"}}}
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        return {"event": {"end": {"exitCode": -1, "exited": False, "status": f"signal: {name}"}}}
    if kind == "timeout":
        raise ConnectError("deadline_exceeded", f"the command ran past its timeout "
                                                f"({content['timeout']:g} s) and was killed")
    if kind == "gateway_error":
        raise ConnectError("unavailable", content["message"])
    return None


async def with_keepalive(events: AsyncIterator[dict[str, Any]], interval: float
                         ) -> AsyncIterator[dict[str, Any] | None]:
    """``events``, with None after each ``interval`` s without one. The pending read is never
    cancelled by the wait (that would end the log's generator), only when the stream ends."""
    pending: asyncio.Future[dict[str, Any]] | None = None
    try:
        while True:
            pending = pending or asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if not done:
                yield None
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield event
    finally:
        if pending is not None:
            pending.cancel()


def running(call: ProcessCall, message: Message) -> Command:
    """The running command a ``ProcessSelector`` names (by pid; Sandcell keeps no tags)."""
    selector = object_field(message, "process")
    pid = field(selector, "pid")
    if field(selector, "tag") is not None and pid is None:
        raise ConnectError("not_found", "Sandcell keeps no process tags; select by pid")
    if not isinstance(pid, int) or isinstance(pid, bool):
        raise ConnectError("invalid_argument", "process.pid must be a number")
    for described in call.commands.list(call.sandbox_id, call.tenant):
        if described["pid"] == pid and described["state"] == "running":
            return call.commands.get(call.sandbox_id, call.tenant, described["id"])
    raise ConnectError("not_found", f"process with pid {pid} not found")


async def list_processes(call: ProcessCall, message: Message) -> Message:
    processes = []
    for described in call.commands.list(call.sandbox_id, call.tenant):
        if described["state"] == "running":
            spec = call.commands.get(call.sandbox_id, call.tenant, described["id"]).spec
            processes.append({"pid": described["pid"], "config": {
                "cmd": spec.argv[0], "args": list(spec.argv[1:]), "envs": dict(spec.env),
                "cwd": e2b_path(spec.cwd or ".")}})
    return {"processes": processes}


async def send_input(call: ProcessCall, message: Message) -> Message:
    command = running(call, message)
    given = object_field(message, "input")
    if field(given, "pty") is not None:
        raise ConnectError("unimplemented", "Sandcell has no PTY (docs/e2b.md)")
    await call.commands.write_stdin(call.sandbox_id, call.tenant, command.id,
                                    bytes_field(given, "stdin"), close=False)
    return {}


async def close_stdin(call: ProcessCall, message: Message) -> Message:
    command = running(call, message)
    await call.commands.write_stdin(call.sandbox_id, call.tenant, command.id, b"", close=True)
    return {}


async def send_signal(call: ProcessCall, message: Message) -> Message:
    command = running(call, message)
    signum = _SIGNALS.get(field(message, "signal"))
    if signum is None:
        raise ConnectError("invalid_argument", "signal must be SIGNAL_SIGKILL or SIGNAL_SIGTERM")
    await call.commands.signal(call.sandbox_id, call.tenant, command.id, int(signum))
    return {}
