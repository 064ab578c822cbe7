"""Record the cells Jupyter clients run over the WebSocket, as REST executions are recorded.

A cell opens when a client's ``execute_request`` goes to the kernel (unless it is ``silent`` or
``store_history`` is false: those are the front end's own housekeeping, not the user's cells)
and is saved once its ``execute_reply`` and its IOPub ``idle`` status both came. Its output is
capped as a REST execution's is: past ``output_limit`` bytes the rest is dropped, announced by
a marker. A kernel that dies or restarts leaves its open cells saved as unfinished.

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

from .cells import CellEnd, OutputBudget
from .store import CellRecord, CellRecorder

MAX_OPEN = 1000  # cells queued or running per kernel; a client queuing more loses the oldest


class _OpenCell:
    def __init__(self, code: str, output_limit: int) -> None:
        self.recorder = CellRecorder(code)
        self.end = CellEnd()
        self._budget = OutputBudget(output_limit, "the rest is not in this record")

    def add(self, msg: dict[str, Any]) -> bool:
        """Record ``msg``; True once the cell is over."""
        if msg["msg_type"] != "status":
            for kept in self._budget.admit(msg):
                self.recorder.add(kept)
        return self.end.see(msg)


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
        if cell.add(msg):
            del self._open[msg_id]
            self._save(cell.recorder.finish())

    def abandon(self) -> None:
        """The kernel is gone: save the open cells as unfinished (no status), in order."""
        cells, self._open = list(self._open.values()), collections.OrderedDict()
        for cell in cells:
            self._save(cell.recorder.finish())
