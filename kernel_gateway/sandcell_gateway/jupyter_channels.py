"""``/api/kernels/{id}/channels``: the Jupyter kernel WebSocket, bridged to a sandbox's kernel.

Two wire formats, as Jupyter Server speaks them:

* default: every message one JSON text frame ``{"channel", "header", "parent_header",
  "metadata", "content", "buffers"}`` (a message with binary buffers goes out in the legacy
  binary framing: big-endian offsets, then the JSON, then the buffers);
* ``v1.kernel.websocket.jupyter.org`` when the client offers that subprotocol: one binary frame
  of little-endian 64-bit offsets, the channel name, then header, parent_header, metadata,
  content and buffers, each JSON part as-is.

The codec is pure functions; the handler only moves frames between a socket and a
:class:`~sandcell_gateway.jupyter_bridge.KernelBridge`.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import struct
import uuid
from typing import Any, NamedTuple

import tornado.websocket
from jupyter_client.jsonutil import json_default

from .base import BaseHandler
from .errors import BadRequest, KernelDied
from .jupyter_bridge import KernelBridge, Message
from .jupyter_messages import status_message
from .kernel import KernelGone
from .lingering import linger

log = logging.getLogger(__name__)

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
CLIENT_CHANNELS = frozenset({"shell", "control", "stdin"})
PARTS = ("header", "parent_header", "metadata", "content")
MAX_QUEUED = 10_000  # messages waiting for a slow client before it is disconnected


class ClientMessage(NamedTuple):
    """A client's message, ready to sign and send: JSON parts then buffers."""

    channel: str
    parts: list[bytes]
    header: dict[str, Any]

    @property
    def msg_id(self) -> str:
        return str(self.header["msg_id"])

    @property
    def is_execution(self) -> bool:
        return self.channel == "shell" and self.header["msg_type"] == "execute_request"

    @property
    def content(self) -> dict[str, Any]:
        """The decoded content; ``{}`` if it is not a JSON object (the kernel will refuse it)."""
        try:
            content = json.loads(self.parts[3])
        except (ValueError, RecursionError):
            return {}
        return content if isinstance(content, dict) else {}


def pack(obj: Any) -> bytes:
    return json.dumps(obj, default=json_default, ensure_ascii=False).encode()


def encode_v1(channel: str, parts: list[bytes]) -> bytes:
    """Frame ``parts`` for the v1 subprotocol."""
    name = channel.encode()
    offsets = [8 * (len(parts) + 3), 8 * (len(parts) + 3) + len(name)]
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    header = struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets)
    return b"".join([header, name, *parts])


def decode_v1(data: bytes) -> tuple[str, list[bytes]]:
    """Split a v1 frame into its channel and parts (``ValueError`` if malformed)."""
    if len(data) < 8:
        raise ValueError("v1 frame shorter than its offset count")
    count = struct.unpack_from("<Q", data)[0]
    if count < 2 or len(data) < 8 * (count + 1):
        raise ValueError(f"v1 frame with an impossible offset count {count}")
    offsets = struct.unpack_from(f"<{count}Q", data, 8)
    if list(offsets) != sorted(offsets) or offsets[-1] > len(data):
        raise ValueError("v1 frame offsets out of order or past the end")
    channel = data[offsets[0]:offsets[1]].decode()
    return channel, [data[a:b] for a, b in zip(offsets[1:-1], offsets[2:])]


def encode_legacy_binary(msg: Message) -> bytes:
    """Jupyter's pre-v1 binary framing, for JSON-protocol messages that carry buffers."""
    body = {k: v for k, v in msg.items() if k != "buffers"}
    chunks = [pack(body), *(bytes(b) for b in msg["buffers"])]
    offsets = [4 * (len(chunks) + 1)]
    for chunk in chunks[:-1]:
        offsets.append(offsets[-1] + len(chunk))
    return struct.pack(f"!{len(chunks) + 1}I", len(chunks), *offsets) + b"".join(chunks)


def decode_legacy_binary(data: bytes) -> Message:
    """Split a pre-v1 binary frame (``ValueError`` if malformed)."""
    if len(data) < 8:
        raise ValueError("binary frame shorter than its offset table")
    count = struct.unpack_from("!I", data)[0]
    if count < 1 or len(data) < 4 * (count + 1):
        raise ValueError(f"binary frame with an impossible offset count {count}")
    offsets = [*struct.unpack_from(f"!{count}I", data, 4), len(data)]
    if offsets != sorted(offsets) or offsets[0] < 4 * (count + 1):
        raise ValueError("binary frame offsets out of order or past the end")
    chunks = [data[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    msg = json.loads(chunks[0])
    if not isinstance(msg, dict):
        raise ValueError("a message must be a JSON object")
    msg["buffers"] = chunks[1:]
    return msg


def kernel_to_client(channel: str, msg: Message, protocol: str | None) -> str | bytes:
    """Encode one kernel message (as ``Session.deserialize`` returns it) for the client."""
    buffers = [bytes(b) for b in msg.get("buffers") or []]
    if protocol == V1_PROTOCOL:
        return encode_v1(channel, [*(pack(msg[k]) for k in PARTS), *buffers])
    body = {"channel": channel, "header": msg["header"], "msg_id": msg["header"].get("msg_id"),
            "msg_type": msg["header"].get("msg_type"), "parent_header": msg["parent_header"],
            "metadata": msg["metadata"], "content": msg["content"], "buffers": []}
    if buffers:
        return encode_legacy_binary({**body, "buffers": buffers})
    return json.dumps(body, default=json_default)


def client_to_kernel(data: str | bytes, protocol: str | None) -> ClientMessage:
    """Decode a client's frame (``ValueError`` if it is not a message we can send)."""
    if isinstance(data, bytes) and protocol == V1_PROTOCOL:
        channel, parts = decode_v1(data)
        header = json.loads(parts[0]) if parts else None
    else:
        msg = json.loads(data) if isinstance(data, str) else decode_legacy_binary(data)
        if not isinstance(msg, dict):
            raise ValueError("a message must be a JSON object")
        # Jupyter Server treats a message without a channel as shell; some clients rely on it
        # (jupyter_server's own GatewayKernelClient never sets one).
        channel, header = msg.get("channel") or "shell", msg.get("header")
        parts = [pack(msg.get(k) or {}) for k in PARTS] + _buffers(msg.get("buffers"))
    if not isinstance(channel, str) or channel not in CLIENT_CHANNELS:
        raise ValueError(f"cannot send on channel {channel!r}")
    if len(parts) < 4 or not isinstance(header, dict) or not header.get("msg_id") \
            or not isinstance(header.get("msg_type"), str):
        raise ValueError("a message needs header (with msg_id and msg_type), parent_header, "
                         "metadata, content")
    return ClientMessage(channel, parts, header)


def _buffers(buffers: Any) -> list[bytes]:
    """A JSON message's ``buffers`` (binary chunks after decode_legacy_binary; else empty)."""
    if not buffers:
        return []
    if not isinstance(buffers, list) or not all(isinstance(b, bytes) for b in buffers):
        raise ValueError("buffers must come as binary frames, not in the JSON")
    return list(buffers)


class LingeringProtocol(tornado.websocket.WebSocketProtocol13):
    """Tornado's protocol, but a connection it aborts ends in a lingering close.

    Tornado aborts on a frame over ``max_message_size`` as soon as it has read the frame's
    header, with the 1009 close frame just written and the rest of the frame still arriving:
    the kernel answered those bytes with a reset, and the client, still sending, lost the
    close frame (closed with no code, about 1 in 10 under load)."""

    def _abort(self) -> None:
        if self.stream is not None:
            linger(self.stream)
        super()._abort()


class KernelChannelsHandler(BaseHandler, tornado.websocket.WebSocketHandler):
    """One Jupyter client's WebSocket to a kernel (token in the header or ``?token=``)."""

    bridge: KernelBridge
    session_id = ""
    _writer: asyncio.Task[None] | None = None

    @property
    def ping_interval(self) -> float:
        return 30.0  # keeps proxies from closing an idle notebook; detects dead peers

    @property
    def max_message_size(self) -> int:
        """A bigger client frame closes the socket with 1009 (Tornado's check, before decoding)."""
        return self.deps.websocket_max_message_size

    def get_websocket_protocol(self) -> tornado.websocket.WebSocketProtocol | None:
        protocol = super().get_websocket_protocol()
        if not isinstance(protocol, tornado.websocket.WebSocketProtocol13):
            return protocol
        return LingeringProtocol(self, False, protocol.params)

    def check_origin(self, origin: str) -> bool:
        # Browsers let any page open a WebSocket, but only a page holding the token gets past
        # prepare(); so a token-authenticated request may come from any origin.
        return self._authenticate() is not None

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return V1_PROTOCOL if V1_PROTOCOL in subprotocols else None

    async def get(self, *args: Any, **kwargs: Any) -> None:
        sandbox = self.deps.jupyter.find(args[0], self.tenant)  # 404 / 409 before the upgrade
        if self.request.headers.get("Upgrade", "").lower() != "websocket" \
                or not self.request.headers.get("Sec-WebSocket-Key"):
            # Tornado would answer in plain text; every gateway error is JSON
            raise BadRequest("this route is a WebSocket: send an Upgrade request",
                             code="websocket_required")
        if sandbox.dead:
            raise KernelDied(f"kernel {args[0]} is dead; restart or delete it")
        self.sandbox_id = sandbox.id
        self.log_context.sandbox_id = sandbox.id  # a kernel id is not the sandbox's
        self.session_id = self.get_query_argument("session_id", "") or uuid.uuid4().hex
        await tornado.websocket.WebSocketHandler.get(self, *args, **kwargs)

    def open(self, *args: str, **kwargs: str) -> None:
        stream = getattr(self.ws_connection, "stream", None)
        if stream is not None:
            stream.set_nodelay(True)  # Nagle + delayed ACKs: ~40 ms per message
        self._queue: collections.deque[tuple[str, Message] | None] = collections.deque()
        self._ready = asyncio.Event()
        self.bridge = self.deps.jupyter.attach(self, self.sandbox_id, self.tenant)
        self._writer = asyncio.ensure_future(self._write_forever())

    def deliver(self, channel: str, msg: Message) -> None:
        if len(self._queue) >= MAX_QUEUED:
            log.warning("kernel %s: client %s too slow; disconnecting it",
                        self.sandbox_id, self.session_id)
            self.close(1013, "client too slow")
            return
        self._queue.append((channel, msg))
        self._ready.set()

    def kernel_gone(self) -> None:
        self._queue.append(("iopub", status_message("dead")))
        self._queue.append(None)
        self._ready.set()

    async def _write_forever(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                item = self._queue[0]
                if item is None:
                    self.close(1000, "kernel deleted or dead")
                    return
                try:
                    written = self.write_message(
                        kernel_to_client(*item, self.selected_subprotocol), binary=self._binary(item))
                except tornado.websocket.WebSocketClosedError:
                    return  # on_close keeps the unwritten messages for a reconnect
                # Handed to the socket: a client that reads it and leaves before the write
                # completes must not get it again on reconnect (seen under load).
                self._queue.popleft()
                try:
                    await written
                except tornado.websocket.WebSocketClosedError:
                    return

    def _binary(self, item: tuple[str, Message]) -> bool:
        return self.selected_subprotocol == V1_PROTOCOL or bool(item[1].get("buffers"))

    async def on_message(self, message: str | bytes) -> None:
        try:
            msg = client_to_kernel(message, self.selected_subprotocol)
        except (ValueError, struct.error, RecursionError) as exc:
            # Jupyter Server also logs and drops a message it cannot route; the socket stays open
            log.warning("kernel %s: ignored a malformed client message: %s", self.sandbox_id, exc)
            return
        try:
            await self.deps.jupyter.send(self.bridge, self, self.tenant, msg)
        except (KernelGone, ConnectionError):
            self.kernel_gone()

    def on_close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
        unsent = [item for item in getattr(self, "_queue", ()) if item is not None]
        if hasattr(self, "bridge"):
            self.bridge.detach(self, unsent)

