"""An NDJSON response read one line at a time: what execute and invoke streams share.

Edit ``sdk/sandcell/_async/_lines.py``; ``scripts/unasync.py`` writes its sync twin
``sdk/sandcell/_sync/_lines.py`` from it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from ._client import AsyncGatewayAPI

__all__ = ["AsyncResponseLines"]


class AsyncResponseLines:
    """Sends ``request`` on first use, then yields its body's lines; closes at the end.

    Transport errors become Sandcell exceptions (``api.errors()``).
    """

    def __init__(self, api: AsyncGatewayAPI, request: httpx.Request) -> None:
        self._api = api
        self._request = request
        self.response: httpx.Response | None = None
        self._lines: AsyncIterator[str] | None = None
        self.finished = False

    @property
    def started(self) -> bool:
        return self._lines is not None

    async def open(self) -> AsyncIterator[str]:
        if self._lines is None:
            self.response = await self._api.send_stream(self._request)
            self._lines = self.response.aiter_lines()
        return self._lines

    async def next(self) -> str | None:
        """The next line, or ``None`` (and the response closed) at its end."""
        lines = await self.open()
        with self._api.errors():
            try:
                return await lines.__anext__()
            except StopAsyncIteration:
                await self.close()
                return None

    async def close(self) -> None:
        self.finished = True
        if self.response is not None:
            await self.response.aclose()
