"""The execute stream without the I/O: NDJSON lines to typed events to an ``Execution``.

The async and sync streams both feed lines here, so parsing, accumulation and
callbacks behave identically in both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from ._exceptions import ExecutionError, SandboxError, TimeoutError
from ._models import (
    ClearOutputEvent,
    ErrorEvent,
    ExecuteInputEvent,
    Execution,
    ExecutionEvent,
    GatewayErrorEvent,
    ReplyEvent,
    Result,
    ResultEvent,
    StatusEvent,
    StreamEvent,
    TimeoutEvent,
)

__all__ = ["EVENT_TYPES", "Callbacks", "ExecutionAccumulator", "parse_event"]

EVENT_TYPES: dict[str, type[ExecutionEvent]] = {
    "status": StatusEvent,
    "execute_input": ExecuteInputEvent,
    "stream": StreamEvent,
    "display_data": ResultEvent,
    "update_display_data": ResultEvent,
    "execute_result": ResultEvent,
    "error": ErrorEvent,
    "clear_output": ClearOutputEvent,
    "timeout": TimeoutEvent,
    "gateway_error": GatewayErrorEvent,
    "execute_reply": ReplyEvent,
}


def parse_event(line: str) -> ExecutionEvent | None:
    """The event on one NDJSON line; ``None`` for a blank line.

    >>> parse_event('{"seq": 2, "msg_type": "stream", "content": {"name": "stdout", "text": "1\\\\n"}}')
    StreamEvent(seq=2, msg_type='stream', name='stdout', text='1\\n')
    >>> parse_event("") is None
    True
    """
    if not line.strip():
        return None
    payload = json_object(line)
    msg_type = str(payload.get("msg_type", ""))
    content = payload.get("content")
    seq = payload.get("seq")
    event_type = EVENT_TYPES.get(msg_type, ExecutionEvent)
    return event_type.from_content(
        seq if isinstance(seq, int) else -1,
        msg_type,
        content if isinstance(content, dict) else {},
    )


def json_object(line: str) -> dict[str, Any]:
    """One NDJSON line of a gateway stream (execute, invoke, command), as a JSON object."""
    try:
        payload = json.loads(line)
    except ValueError as exc:
        raise SandboxError("invalid_event", f"the gateway sent a line that is not JSON: {line[:200]!r}") from exc
    if not isinstance(payload, dict):
        raise SandboxError("invalid_event", f"the gateway sent a line that is not a JSON object: {line[:200]!r}")
    return payload


class ExecutionAccumulator:
    """Folds events into an ``Execution`` the way a notebook front end would.

    >>> acc = ExecutionAccumulator()
    >>> acc.apply(parse_event('{"seq": 0, "msg_type": "stream", "content": {"name": "stdout", "text": "hi"}}'))
    >>> acc.apply(parse_event('{"seq": 1, "msg_type": "execute_reply", "content": {"status": "ok", "execution_count": 1}}'))
    >>> acc.result()
    Execution(status='ok', execution_count=1, stdout='hi', stderr='', results=[], error=None)
    """

    def __init__(self) -> None:
        self.execution = Execution()
        self._clear_pending = False
        self._timeout: TimeoutEvent | None = None
        self._gateway_error: GatewayErrorEvent | None = None

    def apply(self, event: ExecutionEvent) -> None:
        """Add one event to ``self.execution``."""
        match event:
            case StreamEvent():
                self._add_stream(event)
            case ResultEvent():
                self._add_result(event)
            case ErrorEvent():
                self._add_error(event.error)
            case ClearOutputEvent():
                self._clear(event.wait)
            case ExecuteInputEvent() | ReplyEvent():
                self._set_count(event.execution_count)
                if isinstance(event, ReplyEvent):
                    self.execution.status = event.status
            case TimeoutEvent():
                self._timeout = event
            case GatewayErrorEvent():
                self._gateway_error = event

    def result(self) -> Execution:
        """The finished ``Execution``; raises when the execution did not finish normally."""
        execution = self.execution
        if self._gateway_error is not None:
            error = self._gateway_error
            raise SandboxError(error.code, error.message, execution=execution)
        if self._timeout is not None:
            raise TimeoutError(self._timeout.timeout, execution=execution)
        if execution.status is None:
            raise SandboxError(
                "incomplete_stream",
                "the execute stream ended before the kernel replied (it was closed early, or the "
                "gateway went away); the partial output is in .execution",
                execution=execution,
            )
        return execution

    def _add_stream(self, event: StreamEvent) -> None:
        self._flush_pending_clear()
        logs = self.execution.logs
        (logs.stderr if event.name == "stderr" else logs.stdout).append(event.text)

    def _add_result(self, event: ResultEvent) -> None:
        if event.msg_type == "update_display_data":
            self._update_display(event.result)
            return
        self._flush_pending_clear()
        self.execution.results.append(event.result)
        if event.result.is_main_result:
            self._set_count(event.content.get("execution_count"))

    def _update_display(self, update: Result) -> None:
        """Replace every earlier output with the same display_id, as Jupyter does."""
        results = self.execution.results
        for index, result in enumerate(results):
            if update.display_id is not None and result.display_id == update.display_id:
                results[index] = update

    def _add_error(self, error: ExecutionError) -> None:
        self._flush_pending_clear()
        error.execution = self.execution
        self.execution.error = error

    def _clear(self, wait: bool) -> None:
        self._clear_pending = True
        if not wait:
            self._flush_pending_clear()

    def _flush_pending_clear(self) -> None:
        if self._clear_pending:
            self._clear_pending = False
            self.execution.logs.stdout.clear()
            self.execution.logs.stderr.clear()
            self.execution.results.clear()

    def _set_count(self, count: Any) -> None:
        if isinstance(count, int):
            self.execution.execution_count = count


@dataclass(frozen=True)
class Callbacks:
    """Plain callables invoked as events arrive; sugar over the same stream.

    >>> seen = []
    >>> Callbacks(on_stdout=seen.append).dispatch(StreamEvent.from_content(0, "stream", {"text": "hi"}))
    >>> seen
    ['hi']
    """

    on_stdout: Callable[[str], object] | None = None
    on_stderr: Callable[[str], object] | None = None
    on_result: Callable[[Result], object] | None = None
    on_error: Callable[[ExecutionError], object] | None = None

    def dispatch(self, event: ExecutionEvent) -> None:
        """Call the callback that matches ``event``, if there is one."""
        match event:
            case StreamEvent(name="stderr") if self.on_stderr is not None:
                self.on_stderr(event.text)
            case StreamEvent(name="stdout") if self.on_stdout is not None:
                self.on_stdout(event.text)
            case ResultEvent() if self.on_result is not None:
                self.on_result(event.result)
            case ErrorEvent() if self.on_error is not None:
                self.on_error(event.error)
