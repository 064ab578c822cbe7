"""Sandcell's Python SDK: run code in warm, hardened sandboxes and get its output back live.

    import sandcell

    with sandcell.Client() as client:
        with client.sessions.create(template="python") as session:
            execution = session.execute("print('hi')\\n6*7")
            assert execution.stdout == "hi\\n" and execution.text == "42"

``AsyncClient`` is the same API with ``await``. See docs/sdk.md.
"""

from ._async import AsyncClient, AsyncExecutionStream, AsyncSession, AsyncSessions
from ._config import Timeout
from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ExecutionError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    SandboxError,
    SandcellError,
    ServiceUnavailableError,
    TimeoutError,
)
from ._models import (
    ClearOutputEvent,
    ErrorEvent,
    ExecuteInputEvent,
    Execution,
    ExecutionEvent,
    GatewayErrorEvent,
    Logs,
    ReplyEvent,
    Result,
    ResultEvent,
    SandboxInfo,
    StatusEvent,
    StreamEvent,
    TimeoutEvent,
)
from ._sync import Client, ExecutionStream, Session, Sessions
from ._version import __version__

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncExecutionStream",
    "AsyncSession",
    "AsyncSessions",
    "AuthenticationError",
    "BadRequestError",
    "ClearOutputEvent",
    "Client",
    "ConflictError",
    "ErrorEvent",
    "ExecuteInputEvent",
    "Execution",
    "ExecutionError",
    "ExecutionEvent",
    "ExecutionStream",
    "GatewayErrorEvent",
    "InternalServerError",
    "Logs",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "ReplyEvent",
    "Result",
    "ResultEvent",
    "SandboxError",
    "SandboxInfo",
    "SandcellError",
    "ServiceUnavailableError",
    "Session",
    "Sessions",
    "StatusEvent",
    "StreamEvent",
    "Timeout",
    "TimeoutError",
    "TimeoutEvent",
    "__version__",
]

