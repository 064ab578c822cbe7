"""Client, sessions and execution streams (edit ``_async/``; ``_sync/`` is generated)."""

from ._client import AsyncClient, AsyncGatewayAPI, AsyncSessions
from ._plugins import AsyncPlugin, AsyncPluginInvocation, AsyncPlugins
from ._session import AsyncExecutionStream, AsyncSession

__all__ = [
    "AsyncClient",
    "AsyncExecutionStream",
    "AsyncGatewayAPI",
    "AsyncPlugin",
    "AsyncPluginInvocation",
    "AsyncPlugins",
    "AsyncSession",
    "AsyncSessions",
]
