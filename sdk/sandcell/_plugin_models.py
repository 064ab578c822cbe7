"""Plugins, without the I/O: their manifests, invocation events, paths, bodies, progress bars.

Both clients use these, so ``Plugin.invoke`` behaves the same in ``Client`` and
``AsyncClient``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar
from urllib.parse import quote

from ._exceptions import PluginError, SandboxError
from ._progress import progress_sink
from ._streaming import json_object

__all__ = [
    "CompletedEvent",
    "FailedEvent",
    "LogEvent",
    "PluginEvent",
    "PluginInfo",
    "ProgressEvent",
    "StartedEvent",
]


@dataclass(frozen=True)
class PluginInfo:
    """A plugin's manifest as the gateway serves it.

    >>> info = PluginInfo.from_json({"name": "subtract_numbers", "version": "1.0.0", "language": "python"})
    >>> (info.name, info.versions)
    ('subtract_numbers', ['1.0.0'])
    """

    name: str
    version: str
    language: str = ""
    description: str = ""
    versions: list[str] = field(default_factory=list)
    input_schema: dict[str, Any] = field(default_factory=dict)
    output_schema: dict[str, Any] = field(default_factory=dict)
    # who one worker process may serve call after call: "per_call", "per_tenant" or
    # "shared", and for how long (docs/plugins.md, "Isolation")
    isolation: str = "per_tenant"
    max_invocations: int = 1000
    max_age: float = 300.0
    timeout: float | None = None

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> PluginInfo:
        version = str(payload.get("version", ""))
        return cls(
            name=str(payload.get("name", "")),
            version=version,
            language=str(payload.get("language", "")),
            description=str(payload.get("description") or ""),
            versions=list(payload.get("versions") or [version]),
            input_schema=dict(payload.get("input_schema") or {}),
            output_schema=dict(payload.get("output_schema") or {}),
            isolation=str(payload.get("isolation") or "per_tenant"),
            max_invocations=int(payload.get("max_invocations") or 1000),
            max_age=float(payload.get("max_age") or 300.0),
            timeout=payload.get("timeout"),
        )


@dataclass(frozen=True)
class PluginEvent:
    """One event of a plugin invocation, in order (``seq``).

    >>> parse_plugin_event('{"seq": 1, "msg_type": "progress", "content": {"percent": 50, "message": "half"}}')
    ProgressEvent(seq=1, msg_type='progress', percent=50.0, message='half')
    """

    seq: int
    msg_type: str
    msg_types: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_content(cls, seq: int, msg_type: str, content: dict[str, Any]) -> PluginEvent:
        return cls(seq, msg_type)


@dataclass(frozen=True)
class StartedEvent(PluginEvent):
    """A worker took the invocation.

    >>> StartedEvent(0, "started", "inv_1", "wkr_1", "subtract_numbers", "1.0.0").worker_id
    'wkr_1'
    """

    invocation_id: str = ""
    worker_id: str = ""
    plugin: str = ""
    version: str = ""

    @classmethod
    def from_content(cls, seq: int, msg_type: str, content: dict[str, Any]) -> PluginEvent:
        return cls(seq, msg_type, str(content.get("invocation_id", "")), str(content.get("worker_id", "")),
                   str(content.get("plugin", "")), str(content.get("version", "")))


@dataclass(frozen=True)
class ProgressEvent(PluginEvent):
    """How far along the plugin is: ``percent`` (0–100) and a message.

    >>> ProgressEvent(1, "progress", 50.0, "half").percent
    50.0
    """

    percent: float = 0.0
    message: str = ""

    @classmethod
    def from_content(cls, seq: int, msg_type: str, content: dict[str, Any]) -> PluginEvent:
        return cls(seq, msg_type, float(content.get("percent") or 0.0), str(content.get("message", "")))


@dataclass(frozen=True)
class LogEvent(PluginEvent):
    """A log line from the plugin.

    >>> LogEvent(2, "log", "info", "hello").message
    'hello'
    """

    level: str = "info"
    message: str = ""

    @classmethod
    def from_content(cls, seq: int, msg_type: str, content: dict[str, Any]) -> PluginEvent:
        return cls(seq, msg_type, str(content.get("level", "info")), str(content.get("message", "")))


@dataclass(frozen=True)
class CompletedEvent(PluginEvent):
    """The plugin finished; ``output`` matched its output schema.

    >>> CompletedEvent(3, "completed", {"result": 5.0}).output
    {'result': 5.0}
    """

    output: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_content(cls, seq: int, msg_type: str, content: dict[str, Any]) -> PluginEvent:
        return cls(seq, msg_type, dict(content.get("output") or {}))


@dataclass(frozen=True)
class FailedEvent(PluginEvent):
    """The invocation failed: the plugin raised, its worker crashed, or it timed out.

    >>> FailedEvent(3, "failed", "timeout", "too slow").code
    'timeout'
    """

    code: str = ""
    message: str = ""
    details: str = ""

    @classmethod
    def from_content(cls, seq: int, msg_type: str, content: dict[str, Any]) -> PluginEvent:
        return cls(seq, msg_type, str(content.get("code", "")), str(content.get("message", "")),
                   str(content.get("details", "")))

    def error(self, plugin: str) -> PluginError:
        return PluginError(plugin, self.code, self.message, details=self.details)


EVENT_TYPES: dict[str, type[PluginEvent]] = {
    "started": StartedEvent, "progress": ProgressEvent, "log": LogEvent,
    "completed": CompletedEvent, "failed": FailedEvent,
}


def parse_plugin_event(line: str) -> PluginEvent | None:
    """The event on one NDJSON line of an invoke stream; ``None`` for a blank line."""
    if not line.strip():
        return None
    payload = json_object(line)
    content = payload.get("content")
    if not isinstance(content, dict):
        raise SandboxError("invalid_event", f"the gateway sent an event without content: {line[:200]!r}")
    msg_type = str(payload.get("msg_type", ""))
    seq = payload.get("seq")
    event_type = EVENT_TYPES.get(msg_type, PluginEvent)
    return event_type.from_content(seq if isinstance(seq, int) else -1, msg_type, content)


def plugin_path(name: str | None = None, action: str | None = None) -> str:
    """The URL path of the plugins collection, one plugin, or one of its actions.

    >>> plugin_path(), plugin_path("subtract_numbers", "invoke")
    ('/api/v1/plugins', '/api/v1/plugins/subtract_numbers/invoke')
    """
    path = "/api/v1/plugins"
    if name is not None:
        path += "/" + quote(name, safe="")
    if action is not None:
        path += "/" + action
    return path


def invoke_body(inputs: dict[str, Any], timeout: float | None) -> dict[str, Any]:
    """The ``POST /plugins/{name}/invoke`` body.

    >>> invoke_body({"operand1": 1}, None)
    {'input': {'operand1': 1}}
    """
    body: dict[str, Any] = {"input": dict(inputs)}
    if timeout is not None:
        body["timeout"] = timeout
    return body


class ProgressReporter:
    """Feeds progress events to ``on_progress`` and, when ``show`` is true, to the progress
    display that suits where it is (see ``_progress.py``): a tqdm widget in a notebook, a tqdm
    bar on a terminal, a few plain lines in a file or a pipe."""

    def __init__(self, name: str, show: bool, on_progress: Callable[[ProgressEvent], object] | None) -> None:
        self._on_progress = on_progress
        self._sink = progress_sink(name) if show else None

    def __call__(self, event: PluginEvent) -> None:
        if not isinstance(event, ProgressEvent):
            return
        if self._on_progress is not None:
            self._on_progress(event)
        if self._sink is not None:
            self._sink.update(event.percent, event.message)

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
