"""Record the cells Jupyter clients run over the WebSocket, as REST executions are recorded.

A cell opens when a client's ``execute_request`` goes to the kernel (unless it is ``silent`` or
``store_history`` is false: those are the front end's own housekeeping, not the user's cells)
and is saved once its ``execute_reply`` and its IOPub ``idle`` status both came. Its output is
capped as a REST execution's is: past ``output_limit`` bytes (UTF-8) the rest is dropped (the
stream message crossing the line is cut between characters), announced by a marker. A kernel that dies or restarts leaves its open cells saved as unfinished.

Example::

    history = JupyterHistory(save=print, output_limit=32 << 20)
    history.started(request["header"], request["content"])
    for msg in kernel_messages:      # every message of the kernel, any parent
        history.on_message(msg)      # calls save(record) when a cell is done
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from .kernel import BULKY_TYPES, output_size, utf8_prefix
from .store import CellRecord, CellRecorder

MAX_OPEN = 1000  # cells queued or running per kernel; a client queuing more loses the oldest


class _OpenCell:
    def __init__(self, code: str, output_limit: int) -> None:
        self.recorder = CellRecorder(code)
        self._room = output_limit
        self._limit = output_limit
        self._truncated = False  # truth only: never compared, only tested
        self.replied = self.idle = False  # truth only: on_message asks `replied and idle`

    def add(self, msg: dict[str, Any]) -> None:
        kind = msg["msg_type"]
        if kind == "execute_reply":
            self.replied = True
        elif kind == "status":
            self.idle = msg["content"].get("execution_state") == "idle"
            return
        elif kind in BULKY_TYPES:
            room = self._room
            self._room -= output_size(msg["content"])
            if self._room < 0:
                if not self._truncated:
                    self._truncated = True
                    # as the REST stream (kernel.Inbox): a tight print loop comes as one big
                    # message, so keep the part of its text that fits rather than nothing
                    if kind == "stream" and room > 0:
                        text = utf8_prefix(msg["content"]["text"], room)
                        self.recorder.add({**msg, "content": {**msg["content"], "text": text}})
                    self.recorder.add({"msg_type": "stream", "content": {
                        "name": "stderr", "text": f"\n[Sandcell: output truncated after "
                                                  f"{self._limit} bytes in this record]\n"}})
                return
        self.recorder.add(msg)


class JupyterHistory:
    """The open cells of one kernel's Jupyter clients; ``save`` gets each finished record."""

    def __init__(self, save: Callable[[CellRecord], None], output_limit: int) -> None:
        self._save = save
        self._output_limit = output_limit
        self._open: collections.OrderedDict[str, _OpenCell] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._open)

    def started(self, header: dict[str, Any], content: dict[str, Any]) -> None:
        """Note an ``execute_request`` a client sent to the kernel."""
        code = content.get("code")
        if not isinstance(code, str) or content.get("silent") \
                or content.get("store_history", True) is False:
            return
        self._open[str(header["msg_id"])] = _OpenCell(code, self._output_limit)
        while len(self._open) > MAX_OPEN:
            self._open.popitem(last=False)

    def on_message(self, msg: dict[str, Any]) -> None:
        """Feed one kernel message; a cell whose reply and idle both came is saved."""
        msg_id = msg["parent_header"].get("msg_id")  # None (no parent) is no cell's id
        cell = self._open.get(msg_id)
        if cell is None:
            return
        cell.add(msg)
        if cell.replied and cell.idle:
            del self._open[msg_id]
            self._save(cell.recorder.finish())

    def abandon(self) -> None:
        """The kernel is gone: save the open cells as unfinished (no status), in order."""
        cells, self._open = list(self._open.values()), collections.OrderedDict()
        for cell in cells:
            self._save(cell.recorder.finish())
