"""Fan a kernel's messages out to its Jupyter WebSocket clients; keep what a dropped client missed.

No HTTP in here: the WebSocket handler (``jupyter_channels``) is one kind of :class:`Client`,
and the tests use another.

Routing: IOPub goes to every connected client. Shell, control and stdin messages go to the
clients of the session (``?session_id=``) whose request they answer (their parent's msg_id);
messages answering a request nobody sent over a WebSocket (``/api/v1/.../execute``) are not
forwarded here, the REST stream has them.

Replay: while no client is connected, the messages a client would have received are kept, at
most ``max_messages`` and ``max_bytes`` (oldest dropped first). The next client with the same
``session_id`` as the one that left receives them first, in order; a client of another session
drops them (Jupyter Server's policy: one notebook's output never goes to another's).
"""

from __future__ import annotations

import collections
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from jupyter_client.jsonutil import json_default

from .jupyter_history import JupyterHistory
from .jupyter_messages import obituary

log = logging.getLogger(__name__)

Message = dict[str, Any]
MAX_OWNERS = 10_000  # msg_ids of in-flight WebSocket requests remembered per kernel


class Kernel(Protocol):
    """What a bridge needs of a kernel: :class:`~sandcell_gateway.kernel.KernelConnection`
    is one (the tests use an in-memory one)."""

    closed: bool
    execution_state: str
    death_reason: str

    def subscribe(self, subscriber: Callable[[str, Message | None], None]
                  ) -> Callable[[], None]:
        """Call ``subscriber(channel, msg)`` for every message; ``msg`` None: it is gone."""

    async def send_parts(self, channel: str, parts: list[bytes]) -> None:
        """Sign and send a client's message parts on ``channel``."""


class Client(Protocol):
    """One connected WebSocket (or a test double)."""

    session_id: str

    def deliver(self, channel: str, msg: Message) -> None:
        """Queue one message for the client (must not block)."""

    def kernel_gone(self) -> None:
        """The kernel died or was deleted: close the connection."""


def message_size(msg: Message) -> int:
    """Approximate bytes a message holds (content plus buffers), for the replay bound."""
    buffers = msg.get("buffers") or []
    return len(json.dumps(msg.get("content"), default=json_default)) + sum(
        len(memoryview(b)) for b in buffers)


class ReplayBuffer:
    """Messages kept for a client that left, bounded by count and bytes, oldest dropped first.

    Example::

        buffer = ReplayBuffer(max_messages=2)
        buffer.start("s1")
        for i in range(3):
            buffer.add("iopub", {"content": i})
        assert [m["content"] for _, m in buffer.take("s1")] == [1, 2]
    """

    def __init__(self, max_messages: int = 1000, max_bytes: int = 8 << 20) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.session_id: str | None = None  # None: not buffering
        self.dropped = 0
        self._items: collections.deque[tuple[str, Message, int]] = collections.deque()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def start(self, session_id: str) -> None:
        if self.session_id != session_id:
            self.clear()
        self.session_id = session_id

    def add(self, channel: str, msg: Message, front: bool = False) -> None:
        size = message_size(msg)
        if front:
            self._items.appendleft((channel, msg, size))
        else:
            self._items.append((channel, msg, size))
        self._bytes += size
        while self._items and (len(self._items) > self.max_messages
                               or self._bytes > self.max_bytes):
            self._bytes -= self._items.popleft()[2]
            self.dropped += 1

    def take(self, session_id: str) -> list[tuple[str, Message]]:
        """The kept messages if ``session_id`` is the one that left; stop buffering either way."""
        items = [(c, m) for c, m, _ in self._items] if session_id == self.session_id else []
        if self.dropped and items:
            log.warning("replaying to session %s: %d older message(s) were dropped",
                        session_id, self.dropped)
        self.clear()
        self.session_id = None
        return items

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0
        self.dropped = 0


class KernelBridge:
    """The WebSocket clients of one kernel, and what they missed while away.

    ``resolve`` returns the kernel currently behind the id (a restart swaps it) or None.

    Example::

        bridge = KernelBridge("sbx_...", resolve=lambda: sandbox.kernel)
        bridge.attach(client)          # replays what this client's session missed
        await bridge.send(client, "shell", parts, msg_id)
        bridge.detach(client)
    """

    def __init__(self, kernel_id: str, resolve: Callable[[], Kernel | None],
                 on_gone: Callable[[KernelBridge], None] = lambda bridge: None,
                 buffer: ReplayBuffer | None = None,
                 history: JupyterHistory | None = None,
                 on_activity: Callable[[], None] = lambda: None) -> None:
        self.kernel_id = kernel_id
        self.history = history
        self._resolve = resolve
        self._on_gone = on_gone
        self._on_activity = on_activity  # a message reached a client (replayed or live)
        self.buffer = buffer or ReplayBuffer()
        self.clients: list[Client] = []
        self._owners: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._executing: dict[str, dict[str, Any]] = {}  # session -> its last execute header
        self.last_activity = time.time()
        self._kernel: Kernel | None = None
        self._unsubscribe: Callable[[], None] = lambda: None
        self.closed = False
        self._bind()

    def _bind(self) -> bool:
        kernel = self._resolve()
        if kernel is None or kernel.closed or kernel.execution_state == "dead":
            return False
        self._kernel = kernel
        self._unsubscribe = kernel.subscribe(self.on_message)
        return True

    def attach(self, client: Client) -> None:
        """Connect a client; it first receives what its session missed, then live messages."""
        missed = self.buffer.take(client.session_id)
        if missed:
            self._on_activity()
        for channel, msg in missed:
            client.deliver(channel, msg)
        self.clients.append(client)

    def detach(self, client: Client, unsent: list[tuple[str, Message]] | None = None) -> None:
        """Disconnect a client; ``unsent`` (queued, never written) is kept for its return."""
        if client in self.clients:
            self.clients.remove(client)
        if not self.clients and not self.closed:
            self.buffer.start(client.session_id)
            for channel, msg in reversed(unsent or []):
                self.buffer.add(channel, msg, front=True)

    async def send(self, client: Client, channel: str, parts: list[bytes], msg_id: str) -> None:
        """Pass a client's message to the kernel; its replies will route back to the session."""
        if self._kernel is None:
            raise ConnectionError(f"kernel {self.kernel_id} is gone")
        self._owners[msg_id] = client.session_id
        while len(self._owners) > MAX_OWNERS:
            self._owners.popitem(last=False)
        self.last_activity = time.time()
        await self._kernel.send_parts(channel, parts)

    def note_execution(self, client: Client, header: dict[str, Any]) -> None:
        """``client`` sent this execute_request: if the kernel dies, its error goes there."""
        self._executing[client.session_id] = header

    def on_message(self, channel: str, msg: Message | None) -> None:
        """The kernel's subscriber callback."""
        if msg is None:
            self._kernel_gone()
            return
        self.last_activity = time.time()
        if self.history is not None:
            self.history.on_message(msg)
        if channel == "iopub":
            targets = list(self.clients)
            session = self.buffer.session_id
        else:
            session = self._owners.get(msg["parent_header"].get("msg_id", ""))
            if session is None:
                return  # a REST execution's reply: not ours
            targets = [c for c in self.clients if c.session_id == session]
        if targets:
            self._on_activity()
        for client in targets:
            client.deliver(channel, msg)
        if not self.clients and session is not None and session == self.buffer.session_id:
            self.buffer.add(channel, msg)

    def _kernel_gone(self) -> None:
        if self.history is not None:
            self.history.abandon()  # a restarted kernel never answers the old one's cells
        if self._bind():  # restarted: a fresh kernel serves the same id, keep the clients
            log.info("kernel %s restarted; WebSocket clients stay connected", self.kernel_id)
            return
        self.close()

    def close(self) -> None:
        """The kernel is gone for good: close every client and forget this bridge."""
        if self.closed:
            return
        self.closed = True
        self._unsubscribe()
        if self.history is not None:
            self.history.abandon()
        self.buffer.take("")
        reason = self._kernel.death_reason if self._kernel is not None else ""
        if reason and self.clients:
            self._on_activity()
        for client in list(self.clients):
            if reason:
                client.deliver("iopub", obituary(reason, self._executing.get(client.session_id)))
            client.kernel_gone()
        self.clients.clear()
        self._on_gone(self)
