"""Client, sessions and execution streams (edit ``_async/``; ``_sync/`` is generated)."""

from ._client import AsyncClient, AsyncGatewayAPI, AsyncSessions
from ._commands import AsyncCommandHandle, AsyncCommands
from ._files import AsyncFiles
from ._plugins import AsyncPlugin, AsyncPluginInvocation, AsyncPlugins
from ._session import AsyncExecutionStream, AsyncSession

__all__ = [
    "AsyncClient",
    "AsyncCommandHandle",
    "AsyncCommands",
    "AsyncExecutionStream",
    "AsyncFiles",
    "AsyncGatewayAPI",
    "AsyncPlugin",
    "AsyncPluginInvocation",
    "AsyncPlugins",
    "AsyncSession",
    "AsyncSessions",
]
