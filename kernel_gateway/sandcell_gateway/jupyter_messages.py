"""The Jupyter messages the gateway makes itself, shaped as a kernel would have sent them:
a status, a refused cell, a kernel's death. Pure functions; no HTTP, no sockets.

>>> [(channel, m["msg_type"]) for channel, m in refusal({"msg_id": "1"}, "E", "no")]
[('iopub', 'status'), ('iopub', 'error'), ('shell', 'execute_reply'), ('iopub', 'status')]
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from .wire import iso_time

Message = dict[str, Any]


def gateway_message(msg_type: str, content: dict[str, Any],
                    parent: dict[str, Any] | None = None) -> Message:
    """A message the gateway makes itself, as a kernel would have sent it."""
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "msg_type": msg_type, "username": "sandcell",
              "session": "sandcell-gateway", "version": "5.3",
              "date": iso_time(time.time())}
    return {"header": header, "msg_id": msg_id, "msg_type": msg_type,
            "parent_header": parent or {}, "metadata": {}, "content": content, "buffers": []}


def status_message(state: str, parent: dict[str, Any] | None = None) -> Message:
    """An IOPub ``status`` message (e.g. ``dead`` before closing the socket)."""
    return gateway_message("status", {"execution_state": state}, parent)


def refusal(request: dict[str, Any], ename: str, evalue: str) -> list[tuple[str, Message]]:
    """What a kernel sends for a cell that fails at once, for a cell the gateway refused: the
    error shows in the notebook, and clients waiting for the reply and for idle see both."""
    error = {"ename": ename, "evalue": evalue, "traceback": [f"{ename}: {evalue}"]}
    return [("iopub", status_message("busy", request)),
            ("iopub", gateway_message("error", error, request)),
            ("shell", gateway_message("execute_reply",
                                      {"status": "error", "execution_count": None, **error},
                                      request)),
            ("iopub", status_message("idle", request))]


def obituary(reason: str, parent: dict[str, Any] | None) -> Message:
    """What a client is told when its kernel died for a reason it should know (the gateway
    cut it off: an output message over the limit): an IOPub ``error`` ``kernel_died``."""
    evalue = f"the kernel died ({reason}); restart it or delete it"
    return gateway_message("error", {"ename": "kernel_died", "evalue": evalue,
                                     "traceback": [f"kernel_died: {evalue}"]}, parent)
