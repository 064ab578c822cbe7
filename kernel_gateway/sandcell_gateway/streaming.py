"""The one NDJSON event stream both long-running calls answer with: a cell's execution and a
plugin invocation.

Each event is one JSON line, flushed as it is produced. A client that disconnects cancels the
stream: the handler's task is cancelled, the event generator is closed, and whatever it runs
reacts (the sandbox interrupts the cell, the plugin service kills the worker; docs/api.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any

from tornado.iostream import StreamClosedError

from .base import BaseHandler
from .fastjson import ndjson_line

log = logging.getLogger(__name__)

Event = dict[str, Any]


class EventStreamHandler(BaseHandler):
    """A handler whose answer is :meth:`stream`'s NDJSON."""

    _task: asyncio.Task[Any] | None = None

    async def stream(self, events: AsyncGenerator[Event, None], *, left: str,
                     last: Callable[[Event], bool] = lambda event: False,
                     hold: Callable[[], bool] = lambda: False) -> None:
        """Write ``events`` until they end or ``last(event)`` is true.

        ``hold()`` true after an event: the next one follows at once, so both go out in one
        write. The response is finished before ``events`` is closed, so what closing does (the
        cell's history write) does not delay the client. ``left`` is logged if it leaves.
        """
        self._task = asyncio.current_task()
        self.set_header("Content-Type", "application/x-ndjson")
        self.set_header("Cache-Control", "no-store")
        try:
            async for event in events:
                self.write(ndjson_line(event))
                if last(event):
                    break
                if not hold():
                    await self.flush()
            self._task = None
            self.finish()
        except (StreamClosedError, asyncio.CancelledError):
            log.info("%s", left)
        finally:
            self._task = None
            await events.aclose()
        if not self._finished:
            self.finish()

    def on_connection_close(self) -> None:
        if self._task is not None:
            self._task.cancel()
