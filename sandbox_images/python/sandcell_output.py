"""IPython extension loaded by every Sandcell Python kernel: output leaves in bounded messages.

ipykernel sends ``print`` output in batches, one message per flush interval (0.2 s), however
much was written meanwhile: a tight ``print`` loop makes messages of tens of MiB, which the
gateway must hold whole before it can cut the cell's output at its limit. Here a stream
flushes as soon as it holds ``MAX_BATCH`` characters, so no output message is much larger, and
a flooding cell waits for its output to be sent instead of piling it up in memory.

This keeps ordinary floods cheap; it is no defence (the user's code may undo it), and the
gateway does not depend on it.
"""

from __future__ import annotations

from typing import Any

from ipykernel.iostream import OutStream

MAX_BATCH = 1 << 20  # characters buffered by one stream before it flushes

_write = OutStream.write


def _bounded_write(self: OutStream, string: str) -> int | None:
    written = _write(self, string)
    with self._buffer_lock:
        buffered = sum(buffer.tell() for buffer in self._buffers.values())
    if buffered >= MAX_BATCH:
        self.flush()
    return written


def load_ipython_extension(ipython: Any) -> None:
    OutStream.write = _bounded_write  # type: ignore[method-assign]
