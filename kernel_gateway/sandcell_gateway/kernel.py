"""Talk to one Jupyter kernel over ZMQ, and turn its messages into ordered execution events.

The kernel runs in a container with no network: its sockets are ZMQ ``ipc`` files in a
directory bind-mounted from the host, so the gateway connects with the same connection info
and only ``ip`` pointing at the host side of that directory.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import zmq
import zmq.asyncio
from jupyter_client.jsonutil import extract_dates
from jupyter_client.session import DELIM, Session

from .cells import CellEnd, OutputBudget
from .guard import SMALL, SandboxGuard
from .tenants import TokenBucket

log = logging.getLogger(__name__)

PORTS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}
# A subscriber sees every message as (channel, msg); (channel, None) once the kernel is gone.
Subscriber = Callable[[str, "dict[str, Any] | None"], None]
# Output messages forwarded to clients; others (comm_*, debug_event, ...) are not execution output.
OUTPUT_TYPES = frozenset(
    {"stream", "display_data", "update_display_data", "execute_input", "execute_result",
     "error", "clear_output", "status"}
)


# A MIME bundle with more types than this is refused: a real one has a handful (text/plain,
# text/html, image/png, ...), and each key costs the gateway and every client a lookup.
MAX_MIME_KEYS = 64
# comm_open / input_request a kernel may send per second (bursts of TYPE_BURST_SECONDS):
# widgets open a few, a flood only fills its clients' queues
TYPE_RATES = {"comm_open": 20.0, "input_request": 20.0}
TYPE_BURST_SECONDS = 5


class KernelGone(Exception):
    """The kernel stopped answering because its container exited."""


class Malformed(ValueError):
    """A kernel message the gateway drops (and counts); the text is the counter's key."""


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
                 output_limit: int | None = None, guard: SandboxGuard | None = None,
                 max_message_bytes: int = -1) -> None:
        self.output_limit = output_limit
        # every kernel socket through the guard's relay (see guard.py); None: straight to it
        self._guard = guard
        self._max_message_bytes = max_message_bytes
        self.dropped: collections.Counter[str] = collections.Counter()
        self._type_buckets = {t: TokenBucket(rate, int(rate * TYPE_BURST_SECONDS))
                              for t, rate in TYPE_RATES.items()}
        self.death_reason = ""
        self._session = Session(key=info["key"].encode(), signature_scheme="hmac-sha256",
                                username="sandcell")
        self._context = context or zmq.asyncio.Context.instance()
        base = str(info["ip"])
        # stdin shares the shell's identity: the kernel sends input_request to that identity
        self._sockets = {
            "shell": self._socket(zmq.DEALER, "shell", f"{base}-{info['shell_port']}",
                                  identity=True),
            "control": self._socket(zmq.DEALER, "control", f"{base}-{info['control_port']}"),
            "stdin": self._socket(zmq.DEALER, "stdin", f"{base}-{info['stdin_port']}",
                                  identity=True),
            "iopub": self._socket(zmq.SUB, "iopub", f"{base}-{info['iopub_port']}"),
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

    def _socket(self, kind: int, channel: str, path: str,
                identity: bool = False) -> zmq.asyncio.Socket:
        sock = self._context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        # per part only (a many-part message is bounded by the guard's relay); ZMQ drops the
        # connection rather than hold a bigger part
        sock.setsockopt(zmq.MAXMSGSIZE, self._max_message_bytes)
        if identity:
            sock.setsockopt(zmq.IDENTITY, self._session.bsession)
        sock.setsockopt(zmq.RECONNECT_IVL, 20)  # the ipc file appears when the kernel binds
        if self._guard is not None:
            path = self._guard.relay(channel, path)
        sock.connect(f"ipc://{path}")
        return sock

    async def _read(self, channel: str, sock: zmq.asyncio.Socket) -> None:
        while True:
            try:
                frames = await sock.recv_multipart()
            except (zmq.ZMQError, asyncio.CancelledError):
                return
            size = sum(len(frame) for frame in frames)
            try:
                await self._receive(channel, frames, size)
            finally:
                if self._guard is not None:
                    self._guard.consumed(size)
            # pyzmq answers a recv at once, without yielding, while its queue holds a message:
            # without this a kernel with a backlog (a flood of tiny messages) would keep the
            # loop to itself until its queue is empty, and every other sandbox would wait
            await asyncio.sleep(0)

    async def _receive(self, channel: str, frames: list[bytes], size: int) -> None:
        try:
            if size > SMALL:  # the loop keeps serving others while a big one is checked
                msg = await asyncio.get_running_loop().run_in_executor(
                    None, decode, self._session, frames)
            else:
                msg = decode(self._session, frames)
            msg = self._refuse(msg)
        except Malformed as exc:  # never raised on: dropped and counted
            self._drop(str(exc))
            return
        try:
            self._dispatch(channel, msg)
        except Exception:  # a message no check foresaw must not kill the reader
            log.exception("a kernel message could not be dispatched")

    def _drop(self, why: str) -> None:
        self.dropped[why] += 1
        count = self.dropped[why]
        if count & (count - 1) == 0:  # 1st, 2nd, 4th, 8th...: a flood does not flood the log
            log.warning("dropped a kernel message (%s); %d so far", why, count)

    def _refuse(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Refuse what a kernel may not send, whatever its signature: a too-big MIME bundle
        (replaced by a notice on stderr) and floods of comm_open / input_request."""
        kind = msg["msg_type"]
        bucket = self._type_buckets.get(kind)
        if bucket is not None and bucket.take():
            raise Malformed(f"{kind} over {TYPE_RATES[kind]:g} per second")
        data = msg["content"].get("data")
        if isinstance(data, dict) and len(data) > MAX_MIME_KEYS:
            self.dropped["MIME bundle over the key limit"] += 1
            text = (f"\n[Sandcell: a {kind} with {len(data)} MIME types was refused; at most "
                    f"{MAX_MIME_KEYS} are allowed]\n")
            return {**msg, "msg_type": "stream", "header": {**msg["header"], "msg_type": "stream"},
                    "content": {"name": "stderr", "text": text}, "buffers": []}
        return msg

    def _dispatch(self, channel: str, msg: dict[str, Any]) -> None:
        if channel == "iopub" and msg["msg_type"] == "status":
            self.execution_state = str(msg["content"].get("execution_state", "idle"))
        queue = self._waiters.get(str(msg["parent_header"].get("msg_id", "")))
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

    def fail_pending(self, reason: str = "") -> None:
        """Wake every waiter with :class:`KernelGone` and tell subscribers (the container died,
        or the guard cut it off); ``reason`` is kept in ``death_reason`` for the clients."""
        self.execution_state = "dead"
        self.death_reason = self.death_reason or reason
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
        if self._guard is not None:
            self._guard.close()


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

def decode(session: Session, frames: list[bytes]) -> dict[str, Any]:
    """A kernel message from its ZMQ frames, checked (:class:`Malformed` says why not).

    Like ``Session.deserialize``, but strict about the shape (every part a JSON object,
    ``msg_type`` a string) so no later code meets a list where it expects a dict; orjson
    first (several times faster on a big message), the Session's own JSON for what it
    refuses (NaN, lone surrogates).
    """
    try:
        parts = frames[frames.index(DELIM) + 1:]
    except ValueError:
        raise Malformed("no <IDS|MSG> delimiter") from None
    if len(parts) < 5:
        raise Malformed("fewer than 5 frames after the delimiter")
    if not parts[0] or not secrets.compare_digest(parts[0], session.sign(parts[1:5])):
        raise Malformed("bad or missing signature")
    header, parent, metadata, content = (_object(session, part) for part in parts[1:5])
    if not isinstance(header.get("msg_type"), str) or "msg_id" not in header:
        raise Malformed("a header without msg_type or msg_id")
    header = extract_dates(header)
    return {"header": header, "msg_id": header["msg_id"], "msg_type": header["msg_type"],
            "parent_header": extract_dates(parent), "metadata": metadata, "content": content,
            "buffers": [memoryview(b) for b in parts[5:]]}


def _object(session: Session, part: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(part)
    except orjson.JSONDecodeError:
        try:
            value = session.unpack(part)
        except (ValueError, RecursionError):
            raise Malformed("bad JSON") from None
    if not isinstance(value, dict):
        raise Malformed("a message part that is not a JSON object")
    return value


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
