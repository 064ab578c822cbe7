"""Sandcell's Python SDK: run code in warm, hardened sandboxes and get its output back live.

    import sandcell

    with sandcell.Client() as client:
        with client.sessions.create(template="python") as session:
            execution = session.execute("print('hi')\\n6*7")
            assert execution.stdout == "hi\\n" and execution.text == "42"

``AsyncClient`` is the same API with ``await``. See docs/sdk.md. In IPython/Jupyter,
``%load_ext sandcell`` adds the ``%%sandcell`` cell magic (docs/notebooks.md).
"""

from ._async import (
    AsyncClient,
    AsyncExecutionStream,
    AsyncPlugin,
    AsyncPluginInvocation,
    AsyncPlugins,
    AsyncSession,
    AsyncSessions,
)
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
    PluginError,
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
from ._magic import load_ipython_extension, unload_ipython_extension
from ._plugin_models import (
    CompletedEvent,
    FailedEvent,
    LogEvent,
    PluginEvent,
    PluginInfo,
    ProgressEvent,
    StartedEvent,
)
from ._sync import Client, ExecutionStream, Plugin, PluginInvocation, Plugins, Session, Sessions
from ._version import __version__

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncExecutionStream",
    "AsyncPlugin",
    "AsyncPluginInvocation",
    "AsyncPlugins",
    "AsyncSession",
    "AsyncSessions",
    "AuthenticationError",
    "BadRequestError",
    "ClearOutputEvent",
    "Client",
    "CompletedEvent",
    "ConflictError",
    "ErrorEvent",
    "ExecuteInputEvent",
    "Execution",
    "ExecutionError",
    "ExecutionEvent",
    "ExecutionStream",
    "FailedEvent",
    "GatewayErrorEvent",
    "InternalServerError",
    "LogEvent",
    "Logs",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "Plugin",
    "PluginError",
    "PluginEvent",
    "PluginInfo",
    "PluginInvocation",
    "Plugins",
    "ProgressEvent",
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
    "StartedEvent",
    "StatusEvent",
    "StreamEvent",
    "Timeout",
    "TimeoutError",
    "TimeoutEvent",
    "__version__",
    "load_ipython_extension",
    "unload_ipython_extension",
]

