"""Commands in a tenant's sandbox, through its agent: the policy behind the ``/commands`` routes.

A command runs in a process group of its own as the sandbox user, with the sandbox's ``env``
(from its creation) under the command's own. It counts against the tenant's execute rate; a
sandbox runs at most ``max_running`` at once. Its timeout, its output cap and the kill of its
group when the sandbox closes are :mod:`commands`'s.

Example::

    commands = CommandService(service, max_output_bytes=32 << 20)
    command = await commands.start("sbx_...", tenant, CommandSpec.shell("ls -la"))
    async for event in command.log.events(): ...
    await commands.signal("sbx_...", tenant, command.id, signal.SIGTERM)
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

from sandcell_agent._proto import sandbox_pb2 as pb

from .agent import agent_errors
from .commands import Command, CommandSpec, launch
from .errors import BadRequest, Conflict, GatewayError, NotFound
from .service import SandboxService
from .store import CellRecord, CellRecorder
from .tenants import Tenant
from .wire import is_command_id


class CommandService:
    """Starts, lists, feeds and signals the commands of a tenant's sandboxes."""

    def __init__(self, sandboxes: SandboxService, max_output_bytes: int) -> None:
        self.sandboxes = sandboxes
        self.max_output_bytes = max_output_bytes

    async def start(self, sandbox_id: str, tenant: Tenant, spec: CommandSpec) -> Command:
        """Start ``spec``; a refusal (bad cwd, missing program, 429) starts nothing."""
        sandbox = self.sandboxes.get(sandbox_id, tenant)
        agent = sandbox.require_agent()
        with sandbox.commands.reserve():
            tenant.admit_execute()
            command = await launch(agent, spec, self.max_output_bytes, extra_env=sandbox.env,
                                   sandbox_id=sandbox_id)
            sandbox.commands.add(command)
        command.when_done(lambda done: self.sandboxes.record_cell(sandbox_id, history_cell(done)))
        return command

    def get(self, sandbox_id: str, tenant: Tenant, command_id: str) -> Command:
        sandbox = self.sandboxes.get(sandbox_id, tenant)
        if not is_command_id(command_id):
            raise NotFound(f"no command {command_id!r}: command ids look like "
                           "cmd_0123456789abcdef", code="command_not_found")
        return sandbox.commands.get(command_id)

    def list(self, sandbox_id: str, tenant: Tenant) -> list[dict[str, Any]]:
        return [c.describe() for c in self.sandboxes.get(sandbox_id, tenant).commands.list()]

    def touch(self, sandbox_id: str) -> None:
        """Output reaching a client is activity (the sandbox is not idle)."""
        self.sandboxes.touch(sandbox_id)

    async def write_stdin(self, sandbox_id: str, tenant: Tenant, command_id: str,
                          data: bytes, close: bool) -> None:
        command = self._running(sandbox_id, tenant, command_id)
        agent = self.sandboxes.get(sandbox_id, tenant).require_agent()
        with _finished_race(command), agent_errors(sandbox_id):
            await agent.stub.WriteStdin(pb.StdinRequest(process_id=command.id, data=data,
                                                        close=close))

    async def signal(self, sandbox_id: str, tenant: Tenant, command_id: str,
                     signum: int) -> None:
        command = self._running(sandbox_id, tenant, command_id)
        self.sandboxes.get(sandbox_id, tenant).require_agent()
        with _finished_race(command):
            await command.send_signal(signum)

    def _running(self, sandbox_id: str, tenant: Tenant, command_id: str) -> Command:
        command = self.get(sandbox_id, tenant, command_id)
        if not command.running:
            raise _finished(command)
        return command


def _finished(command: Command) -> Conflict:
    return Conflict(f"command {command.id} has finished (exit code {command.exit_code})",
                    code="command_finished")


@contextlib.contextmanager
def _finished_race(command: Command) -> Iterator[None]:
    """The command ended between the check and the agent's call: say so, as the check would."""
    try:
        yield
    except GatewayError as exc:
        if exc.code == "process_not_found":
            raise _finished(command) from exc
        raise


def parse_signal(value: str | int) -> int:
    """A signal by name (``SIGTERM``, ``TERM``, any case) or number; else 400 ``invalid_signal``.

    >>> parse_signal("kill"), parse_signal("SIGINT"), parse_signal(15)
    (9, 2, 15)
    """
    try:
        if isinstance(value, int):
            return int(signal.Signals(value))
        name = value.upper()
        return int(signal.Signals[name if name.startswith("SIG") else f"SIG{name}"])
    except (KeyError, ValueError):
        raise BadRequest(f"{value!r} is not a signal: name one (SIGTERM, SIGKILL, SIGINT, ...) "
                         "or give its number", code="invalid_signal") from None


def history_cell(command: Command) -> CellRecord:
    """The command as a notebook cell: ``!cmd`` (``%%bash`` for several lines) and its output,
    status ``ok`` for exit code 0, else ``error``; the exit code is in its notes.

    >>> from .commands import CommandSpec
    >>> cell = history_cell(Command("cmd_1", CommandSpec.shell("ls"), 7, 100, None))
    >>> cell.code, cell.status
    ('!ls', 'error')
    """
    text = command.spec.command
    recorder = CellRecorder(f"%%bash\n{text}" if "\n" in text else f"!{text}",
                            started_at=command.started_at)
    for event in command.log.snapshot():
        recorder.add(event)
    cell = recorder.finish(finished_at=command.finished_at)
    cell.status = "ok" if command.exit_code == 0 else "error"
    cell.notes["exit_code"] = command.exit_code
    return cell
