"""Client, sessions and execution streams (edit ``_async/``; ``_sync/`` is generated)."""

from ._client import AsyncClient, AsyncGatewayAPI, AsyncSessions
from ._session import AsyncExecutionStream, AsyncSession

__all__ = ["AsyncClient", "AsyncExecutionStream", "AsyncGatewayAPI", "AsyncSession", "AsyncSessions"]
