"""The last line of defence for sandboxes: a small process that outlives a crashed client.

The first Sandcell kernel of a process starts ``python -m sandcell.jupyter._reaper <pid>``
(in its own session, so a terminal's Ctrl-C does not reach it) and tells it, one JSON line
on its stdin at a time, each sandbox it claims and each one it deleted itself. When the
client process ends for any reason (``kill -9`` included) the pipe closes, or the reaper's
parent changes: the reaper deletes what is left and exits. A sandbox lost even so (the
reaper killed too) is culled by the gateway after its ``idle_timeout`` (1800 s by default)
or its ``sandbox_ttl`` (3600 s), whichever comes first.

Imports only httpx and the standard library, so it starts fast.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
from typing import IO, Any, ClassVar

import httpx

log = logging.getLogger(__name__)
CHECK_PARENT_EVERY = 1.0  # seconds; the pipe's EOF is immediate, this catches a shared pipe


class Reaper:
    """This process's reaper (one per process; a forked child gets its own).

    >>> Reaper.line("add", "k1", "http://127.0.0.1:8765", "t")
    b'{"op": "add", "id": "k1", "url": "http://127.0.0.1:8765", "token": "t"}\\n'
    """

    _current: ClassVar[Reaper | None] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "sandcell.jupyter._reaper", str(self.pid)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True)
        self._write_lock = threading.Lock()

    @classmethod
    def get(cls) -> Reaper:
        with cls._lock:
            if cls._current is None or cls._current.pid != os.getpid():
                cls._current = cls()
            return cls._current

    @staticmethod
    def line(op: str, kernel_id: str, url: str = "", token: str | None = None) -> bytes:
        return (json.dumps({"op": op, "id": kernel_id, "url": url, "token": token}) + "\n").encode()

    def add(self, kernel_id: str, url: str, token: str | None) -> None:
        self._send(self.line("add", kernel_id, url, token))

    def remove(self, kernel_id: str) -> None:
        self._send(self.line("remove", kernel_id))

    def _send(self, data: bytes) -> None:
        stdin: IO[bytes] | None = self._process.stdin
        with self._write_lock:
            try:
                assert stdin is not None
                stdin.write(data)
                stdin.flush()
            except (OSError, ValueError):
                log.warning("sandcell: the reaper process is gone; a crash of this process would "
                            "leave its sandboxes to the gateway's idle cull")


def _apply(kernels: dict[str, tuple[str, str | None]], line: bytes) -> None:
    try:
        msg: Any = json.loads(line)
        if msg["op"] == "add":
            kernels[msg["id"]] = (msg["url"], msg["token"])
        else:
            kernels.pop(msg["id"], None)
    except (ValueError, KeyError, TypeError):
        pass  # only our own parent writes here


def _delete_all(kernels: dict[str, tuple[str, str | None]]) -> None:
    for kernel_id, (url, token) in kernels.items():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            httpx.delete(f"{url}/api/kernels/{kernel_id}", headers=headers, timeout=10)
        except httpx.HTTPError:
            pass  # the gateway is gone too; its idle cull or restart reaps the container


def main(argv: list[str]) -> int:
    parent = int(argv[0])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    kernels: dict[str, tuple[str, str | None]] = {}
    fd, pending, open_ = sys.stdin.fileno(), b"", True
    # Read on after the parent is gone (it may die before this process even starts): what
    # it wrote is still in the pipe, and EOF (or silence) ends the drain.
    while open_:
        wait = CHECK_PARENT_EVERY if os.getppid() == parent else 0
        readable, _, _ = select.select([fd], [], [], wait)
        if not readable:
            open_ = os.getppid() == parent
            continue
        chunk = os.read(fd, 65536)
        open_ = bool(chunk)
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            _apply(kernels, line)
    _delete_all(kernels)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
