"""Talk to one Jupyter kernel over ZMQ, and turn its messages into ordered execution events.

The kernel runs in a container with no network: its sockets are ZMQ ``ipc`` files in a
directory bind-mounted from the host, so the gateway connects with the same connection info
and only ``ip`` pointing at the host side of that directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.session import DELIM, Session

from .cells import CellEnd, OutputBudget

log = logging.getLogger(__name__)

PORTS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}
# A subscriber sees every message as (channel, msg); (channel, None) once the kernel is gone.
Subscriber = Callable[[str, "dict[str, Any] | None"], None]
# Output messages forwarded to clients; others (comm_*, debug_event, ...) are not execution output.
OUTPUT_TYPES = frozenset(
    {"stream", "display_data", "update_display_data", "execute_input", "execute_result",
     "error", "clear_output", "status"}
)


class KernelGone(Exception):
    """The kernel stopped answering because its container exited."""


def connection_info(ip: str, key: str) -> dict[str, Any]:
    """A Jupyter connection file's content for ipc transport rooted at ``ip``."""
    return {**PORTS, "transport": "ipc", "ip": ip, "key": key,
            "signature_scheme": "hmac-sha256", "kernel_name": "python3"}


def write_connection_file(directory: Path, uid: int | None) -> dict[str, Any]:
    """Write ``kernel.json`` for the container side (``/conn``); return the host-side info."""
    key = secrets.token_hex(32)
    path = directory / "kernel.json"
    path.write_text(json.dumps(connection_info("/conn/k", key)))
    path.chmod(0o600)
    if uid is not None:
        for item in (directory, path):
            _chown(item, uid)
    return connection_info(str(directory / "k"), key)


def read_connection_file(directory: Path) -> dict[str, Any]:
    """The host-side info of a kernel started earlier (a restarted gateway re-adopting it).

    ``OSError``/``ValueError`` if the file is gone or unreadable: that kernel cannot be reached.
    """
    info = json.loads((directory / "kernel.json").read_text())
    if not isinstance(info, dict) or not isinstance(info.get("key"), str):
        raise ValueError(f"{directory / 'kernel.json'} is not a connection file")
    return connection_info(str(directory / "k"), info["key"])


def _chown(path: Path, uid: int) -> None:
    os.chown(path, uid, uid)


class KernelConnection:
    """Shell, control, stdin and IOPub sockets to one kernel; replies routed by parent msg_id.

    Besides the routed requests, ``subscribe`` sees every message and ``send_parts`` passes a
    client's message through, re-signed with the kernel's key (the Jupyter WebSocket bridge).

    Example::

        conn = KernelConnection(info)
        await conn.wait_ready(deadline=30)
        pending = await conn.execute("1+1")
        while (msg := await pending.next()) is not None:
            print(msg["msg_type"], msg["content"])
        conn.close()
    """

    def __init__(self, info: dict[str, Any], context: zmq.asyncio.Context | None = None,
                 output_limit: int | None = None) -> None:
        self.output_limit = output_limit
        self._session = Session(key=info["key"].encode(), signature_scheme="hmac-sha256",
                                username="sandcell")
        self._context = context or zmq.asyncio.Context.instance()
        base = f"ipc://{info['ip']}"
        # stdin shares the shell's identity: the kernel sends input_request to that identity
        self._sockets = {
            "shell": self._socket(zmq.DEALER, f"{base}-{info['shell_port']}", identity=True),
            "control": self._socket(zmq.DEALER, f"{base}-{info['control_port']}"),
            "stdin": self._socket(zmq.DEALER, f"{base}-{info['stdin_port']}", identity=True),
            "iopub": self._socket(zmq.SUB, f"{base}-{info['iopub_port']}"),
        }
        self._shell, self._control = self._sockets["shell"], self._sockets["control"]
        self._iopub = self._sockets["iopub"]
        self._iopub.setsockopt(zmq.SUBSCRIBE, b"")
        self._waiters: dict[str, Inbox] = {}
        self._subscribers: list[Subscriber] = []
        self._readers = [asyncio.ensure_future(self._read(name, s))
                         for name, s in self._sockets.items()]
        self.execution_state = "starting"
        self.closed = False

    def _socket(self, kind: int, address: str, identity: bool = False) -> zmq.asyncio.Socket:
        sock = self._context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        if identity:
            sock.setsockopt(zmq.IDENTITY, self._session.bsession)
        sock.setsockopt(zmq.RECONNECT_IVL, 20)  # the ipc file appears when the kernel binds
        sock.connect(address)
        return sock

    async def _read(self, channel: str, sock: zmq.asyncio.Socket) -> None:
        while True:
            try:
                frames = await sock.recv_multipart()
            except (zmq.ZMQError, asyncio.CancelledError):
                return
            try:
                _, parts = self._session.feed_identities(frames)
                msg = self._session.deserialize(parts, content=True)
            except Exception:  # a malformed or mis-signed message must not kill the reader
                log.warning("dropped an unreadable kernel message", exc_info=True)
                continue
            self._dispatch(channel, msg)

    def _dispatch(self, channel: str, msg: dict[str, Any]) -> None:
        if channel == "iopub" and msg["msg_type"] == "status":
            self.execution_state = str(msg["content"].get("execution_state", "idle"))
        queue = self._waiters.get(msg["parent_header"].get("msg_id", ""))
        if queue is not None:
            queue.put_nowait(msg)
        for subscriber in list(self._subscribers):
            try:
                subscriber(channel, msg)
            except Exception:  # one broken subscriber must not starve the others
                log.exception("a kernel message subscriber failed")

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber(channel, msg)`` for every message; return the unsubscribe function.

        ``msg`` is deserialized (``header``, ``parent_header``, ``metadata``, ``content``,
        ``buffers``); ``None`` means the kernel is gone and no message will follow.
        """
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    async def send_parts(self, channel: str, parts: Sequence[bytes]) -> None:
        """Send a client's serialized message, signed with the kernel's key.

        ``parts`` are the JSON ``header``, ``parent_header``, ``metadata``, ``content``, then
        any buffers. The client's header (msg_id, session) is kept, so replies route back.
        """
        if channel not in ("shell", "control", "stdin"):
            raise ValueError(f"cannot send on channel {channel!r}")
        if self.closed:
            raise KernelGone("the kernel connection is closed")
        signature = self._session.sign(list(parts[:4]))
        await self._sockets[channel].send_multipart([DELIM, signature, *parts])

    async def request(self, sock_name: str, msg_type: str, content: dict[str, Any],
                      timeout: float) -> dict[str, Any]:
        """Send one request and return its reply's content (``TimeoutError`` after ``timeout``)."""
        sock = self._shell if sock_name == "shell" else self._control
        msg_id, queue = await self._start(sock, msg_type, content)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    msg = await self.next_message(queue)
                    if msg["msg_type"].endswith("_reply"):
                        return dict(msg["content"])
        finally:
            self._waiters.pop(msg_id, None)

    async def _start(self, sock: zmq.asyncio.Socket, msg_type: str, content: dict[str, Any],
                     output_limit: int | None = None) -> tuple[str, Inbox]:
        # Register before sending: a fast kernel can reply before send_multipart returns.
        queue = Inbox(output_limit)
        msg = self._session.msg(msg_type, content)
        msg_id = str(msg["header"]["msg_id"])
        self._waiters[msg_id] = queue
        await sock.send_multipart(self._session.serialize(msg))
        return msg_id, queue

    @staticmethod
    async def next_message(queue: Inbox) -> dict[str, Any]:
        msg = await queue.get()
        if msg is None:
            raise KernelGone("the kernel's container exited")
        return msg

    async def wait_ready(self, deadline: float) -> dict[str, Any]:
        """Return the kernel_info reply once the kernel answers AND IOPub delivers to us.

        A SUB socket drops what is published before its subscription reaches the kernel, so a
        shell reply alone does not prove the first execution's output will arrive. We repeat
        kernel_info until its IOPub ``status`` message comes back too.
        """
        async with asyncio.timeout(deadline):
            while True:
                msg_id, queue = await self._start(self._shell, "kernel_info_request", {})
                try:
                    reply, iopub_seen = await self._collect_info(queue)
                finally:
                    self._waiters.pop(msg_id, None)
                if iopub_seen:
                    return reply

    async def _collect_info(self, queue: Inbox
                            ) -> tuple[dict[str, Any], bool]:
        reply: dict[str, Any] = {}
        iopub_seen = False
        with contextlib.suppress(TimeoutError):
            # 2 s is enough for a started kernel; a kernel still booting simply gets asked again
            async with asyncio.timeout(2.0):
                while not (reply and iopub_seen):
                    msg = await self.next_message(queue)
                    if msg["msg_type"] == "kernel_info_reply":
                        reply = msg["content"]
                    elif msg["msg_type"] == "status":
                        iopub_seen = True
        return reply, iopub_seen and bool(reply)

    async def execute(self, code: str, *, silent: bool = False,
                      store_history: bool | None = None) -> PendingExecution:
        """Send ``execute_request``; read its messages from the returned handle."""
        store = not silent if store_history is None else store_history
        content = {"code": code, "silent": silent, "store_history": store,
                   "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}
        msg_id, queue = await self._start(self._shell, "execute_request", content,
                                          self.output_limit)
        return PendingExecution(queue, lambda: self._waiters.pop(msg_id, None))

    async def warm_up(self) -> None:
        """Run one throwaway cell so the first user execution does not pay for the kernel's
        first-execute setup (~10 ms measured). Not stored: the execution count stays 0."""
        pending = await self.execute(WARM_UP, store_history=False)
        try:
            while await pending.next() is not None:
                pass
        finally:
            pending.close()

    async def interrupt(self, timeout: float = 5.0) -> None:
        """Interrupt the running cell through the control channel (no Docker call needed)."""
        await self.request("control", "interrupt_request", {}, timeout)

    def fail_pending(self) -> None:
        """Wake every waiter with :class:`KernelGone` and tell subscribers (the container died)."""
        self.execution_state = "dead"
        for queue in self._waiters.values():
            queue.put_nowait(None)
        subscribers, self._subscribers = self._subscribers, []
        for subscriber in subscribers:
            subscriber("", None)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.fail_pending()
        for reader in self._readers:
            reader.cancel()
        for sock in self._sockets.values():
            sock.close(linger=0)


# The subscript is a string never evaluated at run time (only mypy reads it).
class Inbox(asyncio.Queue["dict[str, Any] | None"]):  # pragma: no mutate
    """The messages answering one request.

    Output past ``limit`` bytes is dropped (cells.OutputBudget), so a cell that floods output
    cannot grow the gateway's memory however slow the client reads.
    """

    def __init__(self, limit: int | None = None) -> None:
        super().__init__()
        self.budget = OutputBudget(limit, "the rest of this cell's output is dropped")

    @property
    def truncated(self) -> bool:
        return self.budget.truncated

    def put_nowait(self, msg: dict[str, Any] | None) -> None:
        if msg is None:
            super().put_nowait(msg)
            return
        for kept in self.budget.admit(msg):
            super().put_nowait(kept)


# Formats and publishes one result the way a cell's last expression is (the first time costs
# ~3 ms: formatter set-up), without touching the user's ``_`` / ``Out`` or execution count.
WARM_UP = ("_ip = get_ipython()\n"
           "_ip.display_pub.publish(*_ip.display_formatter.format(0))\n"
           "del _ip")

class PendingExecution:
    """Messages of one ``execute_request``: IOPub output in order, then the ``execute_reply``.

    ``next()`` returns None once the cell is over (cells.CellEnd), so every output of the
    request has been returned. Cancelling ``next()`` (a timeout) loses nothing.
    """

    def __init__(self, queue: Inbox,
                 release: Callable[[], object]) -> None:
        self._queue = queue
        self._release = release
        self._reply: dict[str, Any] | None = None
        self._end = CellEnd()
        self.done = False

    async def next(self) -> dict[str, Any] | None:
        while not self._end.over:
            msg = await KernelConnection.next_message(self._queue)
            self._end.see(msg)
            kind = msg["msg_type"]
            if kind == "execute_reply":
                self._reply = msg
            elif kind in OUTPUT_TYPES:
                return msg
        if self.done:
            return None
        self.done = True
        return self._reply

    def close(self) -> None:
        self._release()
