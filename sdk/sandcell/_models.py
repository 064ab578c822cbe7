"""What the gateway sends back: sandboxes, results, executions and execution events.

Everything here is plain data. ``Result`` and ``Execution`` render natively in
notebooks through IPython's ``_repr_*_`` protocol.
"""

from __future__ import annotations

import base64
import reprlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ._exceptions import ExecutionError

__all__ = [
    "ClearOutputEvent",
    "ErrorEvent",
    "ExecuteInputEvent",
    "Execution",
    "ExecutionEvent",
    "GatewayErrorEvent",
    "Logs",
    "ReplyEvent",
    "Result",
    "ResultEvent",
    "SandboxInfo",
    "StatusEvent",
    "StreamEvent",
    "TimeoutEvent",
]

# Short names for the MIME types a notebook front end knows how to render.
MIME_TYPES = {
    "text": "text/plain",
    "html": "text/html",
    "markdown": "text/markdown",
    "svg": "image/svg+xml",
    "png": "image/png",
    "jpeg": "image/jpeg",
    "pdf": "application/pdf",
    "latex": "text/latex",
    "json": "application/json",
    "javascript": "application/javascript",
}
_SHORT_NAMES = {mime: name for name, mime in MIME_TYPES.items()}

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60
_short.maxlist = 4

MimeBundle = tuple[dict[str, Any], dict[str, Any]]


@dataclass(frozen=True)
class Result:
    """One rich output: a mime bundle from ``display()`` or the cell's value.

    >>> r = Result({"text/plain": "42", "text/html": "<b>42</b>"}, is_main_result=True)
    >>> str(r), r.html, r.formats()
    ('42', '<b>42</b>', ['text', 'html'])
    """

    data: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    is_main_result: bool = False
    """True for the cell's value (``execute_result``), False for ``display()`` output."""
    display_id: str | None = None

    def _get(self, name: str) -> Any:
        return self.data.get(MIME_TYPES[name])

    def _text(self, name: str) -> str | None:
        value = self._get(name)
        return value if isinstance(value, str) else None

    @property
    def text(self) -> str | None:
        """``text/plain``."""
        return self._text("text")

    @property
    def html(self) -> str | None:
        """``text/html``."""
        return self._text("html")

    @property
    def markdown(self) -> str | None:
        """``text/markdown``."""
        return self._text("markdown")

    @property
    def svg(self) -> str | None:
        """``image/svg+xml``."""
        return self._text("svg")

    @property
    def png(self) -> str | None:
        """``image/png``, base64-encoded as on the wire."""
        return self._text("png")

    @property
    def jpeg(self) -> str | None:
        """``image/jpeg``, base64-encoded as on the wire."""
        return self._text("jpeg")

    @property
    def pdf(self) -> str | None:
        """``application/pdf``, base64-encoded as on the wire."""
        return self._text("pdf")

    @property
    def latex(self) -> str | None:
        """``text/latex``."""
        return self._text("latex")

    @property
    def json(self) -> Any:
        """``application/json`` (already decoded)."""
        return self._get("json")

    @property
    def javascript(self) -> str | None:
        """``application/javascript``."""
        return self._text("javascript")

    def formats(self) -> list[str]:
        """Short names of the formats present, then any other MIME types as-is."""
        known = [name for name, mime in MIME_TYPES.items() if mime in self.data]
        return known + [mime for mime in self.data if mime not in _SHORT_NAMES]

    def __str__(self) -> str:
        return self.text or ""

    def __repr__(self) -> str:
        if self.text is not None:
            return f"Result(text={_short.repr(self.text)})"
        return f"Result(formats={self.formats()!r})"

    def _repr_html_(self) -> str | None:
        return self.html

    def _repr_markdown_(self) -> str | None:
        return self.markdown

    def _repr_svg_(self) -> str | None:
        return self.svg

    def _repr_png_(self) -> bytes | None:
        return _decode(self.png)

    def _repr_jpeg_(self) -> bytes | None:
        return _decode(self.jpeg)

    def _repr_pdf_(self) -> bytes | None:
        return _decode(self.pdf)

    def _repr_latex_(self) -> str | None:
        return self.latex

    def _repr_json_(self) -> Any:
        return self.json

    def _repr_javascript_(self) -> str | None:
        return self.javascript

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> MimeBundle:
        data = {
            mime: value
            for mime, value in self.data.items()
            if (not include or mime in include) and (not exclude or mime not in exclude)
        }
        return data, dict(self.metadata)


@dataclass
class Logs:
    """Text the code wrote to stdout and stderr, chunk by chunk as it arrived.

    >>> Logs(stdout=["0\\n", "1\\n"]).stdout
    ['0\\n', '1\\n']
    """

    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)


@dataclass(eq=False)
class Execution:
    """Everything one ``execute()`` produced, in order.

    ``error`` is data: code that raises gives an ``Execution`` with ``error`` set;
    ``raise_for_error()`` turns it into an exception when you want one.

    >>> ex = Execution(results=[Result({"text/plain": "42"}, is_main_result=True)])
    >>> ex.logs.stdout.append("hi\\n")
    >>> ex.text, ex.stdout, ex.raise_for_error() is ex
    ('42', 'hi\\n', True)
    """

    results: list[Result] = field(default_factory=list)
    logs: Logs = field(default_factory=Logs)
    error: ExecutionError | None = None
    execution_count: int | None = None
    status: str | None = None
    """The kernel's reply status: ``ok``, ``error`` or ``aborted``; ``None`` until it replies."""

    @property
    def stdout(self) -> str:
        """All of stdout as one string."""
        return "".join(self.logs.stdout)

    @property
    def stderr(self) -> str:
        """All of stderr as one string."""
        return "".join(self.logs.stderr)

    @property
    def text(self) -> str | None:
        """The ``text/plain`` of the cell's value (its ``execute_result``), if any."""
        main = self._main_result()
        return main.text if main is not None and main.is_main_result else None

    def raise_for_error(self) -> Execution:
        """Raise ``self.error`` if the code raised; otherwise return ``self``."""
        if self.error is not None:
            raise self.error
        return self

    def _main_result(self) -> Result | None:
        """The cell's value, else its last display (what a notebook would show)."""
        main = [result for result in self.results if result.is_main_result]
        if main:
            return main[-1]
        return self.results[-1] if self.results else None

    def __repr__(self) -> str:
        return (
            f"Execution(status={self.status!r}, execution_count={self.execution_count!r}, "
            f"stdout={_short.repr(self.stdout)}, stderr={_short.repr(self.stderr)}, "
            f"results={_short.repr(self.results)}, error={self.error!r})"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> MimeBundle:
        main = self._main_result()
        if main is not None:
            return main._repr_mimebundle_(include, exclude)
        return {"text/plain": repr(self)}, {}


@dataclass(frozen=True)
class SandboxInfo:
    """A sandbox as the gateway describes it.

    >>> info = SandboxInfo.from_json({"id": "sbx_1", "template": "python", "state": "running",
    ...                               "created_at": "2026-11-23T10:00:00Z", "metadata": {}})
    >>> info.id, info.created_at.year, info.expires_at
    ('sbx_1', 2026, None)
    """

    id: str
    template: str
    state: str
    created_at: datetime | None = None
    expires_at: datetime | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SandboxInfo:
        """Parse the gateway's sandbox object; unknown fields are ignored."""
        return cls(
            id=str(data["id"]),
            template=str(data.get("template", "")),
            state=str(data.get("state", "")),
            created_at=_datetime(data.get("created_at")),
            expires_at=_datetime(data.get("expires_at")),
            metadata=dict(data.get("metadata") or {}),
        )


@dataclass(frozen=True)
class ExecutionEvent:
    """One line of an execute stream. Unknown ``msg_type`` values parse to this base class.

    >>> ExecutionEvent.from_content(7, "comm_open", {"x": 1})
    ExecutionEvent(seq=7, msg_type='comm_open')
    """

    seq: int
    msg_type: str
    content: dict[str, Any] = field(repr=False)

    @classmethod
    def from_content(cls, seq: int, msg_type: str, content: dict[str, Any]) -> ExecutionEvent:
        """Build the event from the wire fields."""
        return cls(seq, msg_type, content)


@dataclass(frozen=True)
class StatusEvent(ExecutionEvent):
    """The kernel went ``busy`` or ``idle``.

    >>> StatusEvent.from_content(0, "status", {"execution_state": "busy"}).execution_state
    'busy'
    """

    execution_state: str

    @classmethod
    def from_content(cls, seq: int, msg_type: str, content: dict[str, Any]) -> StatusEvent:
        return cls(seq, msg_type, content, str(content.get("execution_state", "")))


@dataclass(frozen=True)
class ExecuteInputEvent(ExecutionEvent):
    """The kernel started running ``code`` as cell ``execution_count``.

    >>> ExecuteInputEvent.from_content(1, "execute_input", {"code": "1", "execution_count": 3}).execution_count
    3
    """

    code: str
    execution_count: int | None

    @classmethod
    def from_content(cls, seq: int, msg_type: str, content: dict[str, Any]) -> ExecuteInputEvent:
        return cls(seq, msg_type, content, str(content.get("code", "")), content.get("execution_count"))


@dataclass(frozen=True)
class StreamEvent(ExecutionEvent):
    """Text on ``stdout`` or ``stderr``.

    >>> StreamEvent.from_content(2, "stream", {"name": "stdout", "text": "1\\n"})
    StreamEvent(seq=2, msg_type='stream', name='stdout', text='1\\n')
    """

    name: str
    text: str

    @classmethod
    def from_content(cls, seq: int, msg_type: str, content: dict[str, Any]) -> StreamEvent:
        return cls(seq, msg_type, content, str(content.get("name", "stdout")), str(content.get("text", "")))


@dataclass(frozen=True)
class ResultEvent(ExecutionEvent):
    """A rich output: ``display_data``, ``update_display_data`` or ``execute_result``.

    >>> e = ResultEvent.from_content(3, "execute_result", {"data": {"text/plain": "42"}, "metadata": {}})
    >>> e.result.text, e.result.is_main_result
    ('42', True)
    """

    result: Result

    @classmethod
    def from_content(cls, seq: int, msg_type: str, content: dict[str, Any]) -> ResultEvent:
        transient = content.get("transient") or {}
        result = Result(
            data=dict(content.get("data") or {}),
            metadata=dict(content.get("metadata") or {}),
            is_main_result=msg_type == "execute_result",
            display_id=transient.get("display_id"),
        )
        return cls(seq, msg_type, content, result)


@dataclass(frozen=True)
class ErrorEvent(ExecutionEvent):
    """The code raised; ``error`` carries ``ename``, ``evalue`` and ``traceback``.

    >>> ErrorEvent.from_content(4, "error", {"ename": "KeyError", "evalue": "'a'", "traceback": []}).error.ename
    'KeyError'
    """

    error: ExecutionError

    @classmethod
    def from_content(cls, seq: int, msg_type: str, content: dict[str, Any]) -> ErrorEvent:
        error = ExecutionError(
            str(content.get("ename", "")),
            str(content.get("evalue", "")),
            [str(line) for line in content.get("traceback") or []],
        )
        return cls(seq, msg_type, content, error)


@dataclass(frozen=True)
class ClearOutputEvent(ExecutionEvent):
    """The code cleared its output (``wait``: only when the next output arrives).

    >>> ClearOutputEvent.from_content(5, "clear_output", {"wait": True}).wait
    True
    """

    wait: bool

    @classmethod
    def from_content(cls, seq: int, msg_type: str, content: dict[str, Any]) -> ClearOutputEvent:
        return cls(seq, msg_type, content, bool(content.get("wait", False)))


@dataclass(frozen=True)
class TimeoutEvent(ExecutionEvent):
    """The call's ``timeout`` (seconds) fired and the gateway interrupted the kernel.

    >>> TimeoutEvent.from_content(6, "timeout", {"timeout": 30}).timeout
    30
    """

    timeout: float | None

    @classmethod
    def from_content(cls, seq: int, msg_type: str, content: dict[str, Any]) -> TimeoutEvent:
        return cls(seq, msg_type, content, content.get("timeout"))


@dataclass(frozen=True)
class GatewayErrorEvent(ExecutionEvent):
    """The gateway could not finish the execution, e.g. ``code='kernel_died'``.

    >>> GatewayErrorEvent.from_content(7, "gateway_error", {"code": "kernel_died", "message": "gone"}).code
    'kernel_died'
    """

    code: str
    message: str

    @classmethod
    def from_content(cls, seq: int, msg_type: str, content: dict[str, Any]) -> GatewayErrorEvent:
        return cls(seq, msg_type, content, str(content.get("code", "")), str(content.get("message", "")))


@dataclass(frozen=True)
class ReplyEvent(ExecutionEvent):
    """The kernel's ``execute_reply``: the last event of a finished execution.

    >>> ReplyEvent.from_content(8, "execute_reply", {"status": "ok", "execution_count": 1}).status
    'ok'
    """

    status: str
    execution_count: int | None

    @classmethod
    def from_content(cls, seq: int, msg_type: str, content: dict[str, Any]) -> ReplyEvent:
        return cls(seq, msg_type, content, str(content.get("status", "")), content.get("execution_count"))


def _decode(value: str | None) -> bytes | None:
    return base64.b64decode(value) if value is not None else None


def _datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
