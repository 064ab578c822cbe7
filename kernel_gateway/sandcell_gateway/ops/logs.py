"""The gateway's log lines: text (the default) or ``--log-format json``, one object a line.

A text line logged while a request is handled names it: ``... tornado.access [4f0c...]: 201
POST /api/v1/sandboxes (127.0.0.1) 7.01ms``.

Every line logged while a request is handled carries that request's id (its
``X-Request-Id``: the client's when it sent a usable one, else a fresh one), its tenant and
its sandbox; the access line of each request adds its status and duration::

    {"time": "2026-12-03T14:33:46.051Z", "level": "info", "logger": "tornado.access",
     "event": "201 POST /api/v1/sandboxes 7.01ms", "request_id": "4f0c...", "tenant":
     "default", "sandbox_id": "sbx_1003d42a90c105f2", "duration": 0.00701, "status": 201,
     "method": "POST", "path": "/api/v1/sandboxes"}

No secret goes into a log: the access line is written here, not by tornado, with the
``?token=`` of WebSocket clients redacted, and no header or body is ever logged.
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import logging
import re
import urllib.parse
import uuid
from datetime import UTC, datetime
from typing import Any

import tornado.web

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s"
# Query parameters whose values are secrets (clients that cannot set headers send the token so).
SECRET_PARAMETERS = frozenset({"token"})
REDACTED = "REDACTED"
# A client's request id is echoed (in a header, in log lines) only if it is this harmless.
_USABLE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
CONTEXT_FIELDS = ("request_id", "tenant", "sandbox_id")
ACCESS_FIELDS = ("duration", "status", "method", "path")

access_log = logging.getLogger("tornado.access")


@dataclasses.dataclass
class RequestContext:
    """What the log lines of one request say about it.

    >>> context = RequestContext("r-1", tenant="alice")
    >>> context.fields()
    {'request_id': 'r-1', 'tenant': 'alice', 'sandbox_id': None}
    """

    request_id: str
    tenant: str | None = None
    sandbox_id: str | None = None

    def fields(self) -> dict[str, str | None]:
        return dataclasses.asdict(self)


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "sandcell_request", default=None)


def request_id_for(given: str | None) -> str:
    """The client's ``X-Request-Id`` when it is a short plain token, else a fresh id.

    >>> request_id_for("trace-42")
    'trace-42'
    >>> len(request_id_for("two\\nlines"))
    32
    """
    if given is not None and _USABLE_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


def enter_request(request_id: str) -> RequestContext:
    """Make ``request_id`` the current request of this task (each request is a task of its
    own, so what it logs, and what it spawns, carries the id)."""
    context = RequestContext(request_id)
    _current.set(context)
    return context


def redact_uri(uri: str) -> str:
    """``uri`` with the values of secret query parameters replaced.

    >>> redact_uri("/api/kernels/k/channels?session_id=s&token=s3cret")
    '/api/kernels/k/channels?session_id=s&token=REDACTED'
    >>> redact_uri("/api/v1/health")
    '/api/v1/health'
    """
    path, mark, query = uri.partition("?")
    if not mark:
        return uri
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    safe = [(k, REDACTED if k.lower() in SECRET_PARAMETERS else v) for k, v in pairs]
    return f"{path}?{urllib.parse.urlencode(safe)}"


class RequestFilter(logging.Filter):
    """Stamps each record with the current request's fields (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _current.get()
        fields = context.fields() if context else dict.fromkeys(CONTEXT_FIELDS)
        for name, value in fields.items():
            if not hasattr(record, name):  # an explicit ``extra`` wins
                setattr(record, name, value)
        return True


def _iso(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class TextFormatter(logging.Formatter):
    """The classic line, with ``[<request id>]`` after the logger's name inside a request.

    >>> record = logging.LogRecord("sandcell", logging.INFO, "", 1, "hello", (), None)
    >>> record.request_id = "r-1"
    >>> TextFormatter().format(record).split(" ", 2)[2]
    'INFO sandcell [r-1]: hello'
    """

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        record.request_tag = f" [{request_id}]" if request_id else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, event, the request's fields, and
    for access lines duration (seconds), status, method and path."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"time": _iso(record.created), "level": record.levelname.lower(),
                                 "logger": record.name, "event": record.getMessage()}
        for name in CONTEXT_FIELDS:
            entry[name] = getattr(record, name, None)
        entry["duration"] = getattr(record, "duration", None)
        entry.update({k: getattr(record, k) for k in ACCESS_FIELDS[1:] if hasattr(record, k)})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "INFO", log_format: str = "text") -> logging.Handler:
    """Send every logger's records to stderr in ``log_format``; returns the handler."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler()
    handler.addFilter(RequestFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    return handler


def log_request(handler: tornado.web.RequestHandler) -> None:
    """The application's ``log_function``: tornado's access line, minus any secret, plus the
    request's id, tenant, sandbox and duration."""
    status, request = handler.get_status(), handler.request
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    duration = request.request_time()
    path = redact_uri(request.uri or "")
    context: RequestContext | None = getattr(handler, "log_context", None)
    fields = context.fields() if context else {"request_id": getattr(handler, "request_id", None)}
    access_log.log(level, "%d %s %s (%s) %.2fms", status, request.method, path,
                   request.remote_ip, duration * 1000,
                   extra={**fields, "duration": round(duration, 6), "status": status,
                          "method": request.method, "path": path})
