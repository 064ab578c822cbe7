"""Tornado handlers for ``/api/v1/sandboxes/{id}/commands``: parse, call CommandService, write.

A command's events stream as the execute route's do (streaming.py). A foreground command's
stream is its POST's answer, and a client that leaves it kills the command; a background
command answers 201 at once, and its events are read (from its start) with
``GET .../commands/{cid}/events``.
"""

from __future__ import annotations

import shlex
from collections.abc import AsyncGenerator
from typing import Any

from .base import BaseHandler
from .command_service import CommandService, parse_signal
from .commands import Command, CommandSpec
from .errors import BadRequest
from .streaming import Event, EventStreamHandler
from .validation import ENV_NAME, ENV_VALUE, MAX_SECONDS, Field, require_utf8

START_FIELDS = {
    "command": Field(str),
    "args": Field(list, items=str),
    "cwd": Field(str),
    "env": Field(dict, items=str, key_pattern=ENV_NAME, value_pattern=ENV_VALUE),
    "timeout": Field((int, float), minimum=0.001, maximum=MAX_SECONDS, nullable=True),
    "stdin": Field(bool),
    "background": Field(bool),
}
STDIN_FIELDS = {"data": Field(str), "close": Field(bool)}
SIGNAL_FIELDS = {"signal": Field((str, int), required=True)}


def command_spec(body: dict[str, Any]) -> CommandSpec:
    """The request's command: exactly one of ``command`` (run by bash) and ``args`` (argv)."""
    if ("command" in body) == ("args" in body):
        raise BadRequest("give exactly one of 'command' (a bash command line) and 'args' "
                         "(the program and its arguments)")
    options = {"cwd": body.get("cwd", ""), "env": body.get("env") or {},
               "timeout": body.get("timeout"), "stdin": body.get("stdin", False),
               "background": body.get("background", False)}
    for text in [body.get("command", ""), *body.get("args", []), options["cwd"],
                 *options["env"], *options["env"].values()]:
        _check_text(text)
    if "args" in body:
        if not body["args"]:
            raise BadRequest("field 'args' must name a program first")
        return CommandSpec(tuple(body["args"]), shlex.join(body["args"]), **options)
    return CommandSpec.shell(body["command"], **options)


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise BadRequest("a command, argument, cwd or env name must not contain NUL")
    require_utf8(text, "a command, argument, cwd or env entry")


class CommandsBaseHandler(EventStreamHandler):
    @property
    def commands(self) -> CommandService:
        commands = self.deps.commands
        if commands is None:  # pragma: no cover - server.py always sets it
            raise RuntimeError("the gateway was built without a CommandService")
        return commands

    async def stream_command(self, sandbox_id: str, command: Command, *, left: str) -> None:
        await self.stream(self._touching(sandbox_id, command), left=left)

    async def _touching(self, sandbox_id: str, command: Command
                        ) -> AsyncGenerator[Event, None]:
        async for event in command.log.events():
            self.commands.touch(sandbox_id)
            yield event


class CommandsHandler(CommandsBaseHandler):
    """GET: the sandbox's commands. POST: start one (streamed, or in the background)."""

    def get(self, sandbox_id: str) -> None:
        self.write_json({"commands": self.commands.list(sandbox_id, self.tenant)})

    async def post(self, sandbox_id: str) -> None:
        spec = command_spec(self.body(START_FIELDS))
        command = await self.commands.start(sandbox_id, self.tenant, spec)
        if spec.background:
            self.set_header("Location", f"/api/v1/sandboxes/{sandbox_id}/commands/{command.id}")
            self.write_json(command.describe(), status=201)
            return
        await self.stream_command(sandbox_id, command,
                                  left=f"client left command {command.id}; killing it")
        if command.running:  # the client left: a foreground command goes with it
            command.close("its client left", code="client_left")


class CommandHandler(CommandsBaseHandler):
    def get(self, sandbox_id: str, command_id: str) -> None:
        self.write_json(self.commands.get(sandbox_id, self.tenant, command_id).describe())


class CommandEventsHandler(CommandsBaseHandler):
    """The command's events from its start, then live, to its end: how a client waits."""

    async def get(self, sandbox_id: str, command_id: str) -> None:
        command = self.commands.get(sandbox_id, self.tenant, command_id)
        await self.stream_command(sandbox_id, command,
                                  left=f"client left the events of command {command_id}")


class CommandStdinHandler(CommandsBaseHandler):
    async def post(self, sandbox_id: str, command_id: str) -> None:
        body = self.body(STDIN_FIELDS)
        data = require_utf8(body.get("data", ""), "stdin data")
        await self.commands.write_stdin(sandbox_id, self.tenant, command_id,
                                        data.encode("utf-8"), body.get("close", False))
        self.set_status(204)
        self.finish()


class CommandSignalHandler(CommandsBaseHandler):
    async def post(self, sandbox_id: str, command_id: str) -> None:
        signum = parse_signal(self.body(SIGNAL_FIELDS)["signal"])
        await self.commands.signal(sandbox_id, self.tenant, command_id, signum)
        self.set_status(204)
        self.finish()


_ID = r"([^/]+)"
ROUTES: list[tuple[str, type[BaseHandler]]] = [
    (rf"/api/v1/sandboxes/{_ID}/commands", CommandsHandler),
    (rf"/api/v1/sandboxes/{_ID}/commands/{_ID}", CommandHandler),
    (rf"/api/v1/sandboxes/{_ID}/commands/{_ID}/events", CommandEventsHandler),
    (rf"/api/v1/sandboxes/{_ID}/commands/{_ID}/stdin", CommandStdinHandler),
    (rf"/api/v1/sandboxes/{_ID}/commands/{_ID}/signal", CommandSignalHandler),
]
