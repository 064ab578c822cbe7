"""Local ZMQ sockets on 127.0.0.1, relayed to a sandbox's channels WebSocket.

jupyter_client connects to five sockets it believes are a local kernel's: shell, control and
stdin (ROUTER), iopub (XPUB: it welcomes each subscriber) and hb (REP, answered here: the kernel's liveness is the
provisioner's ``poll``, not a heartbeat). Each client message is checked against the local
key and forwarded as a v1 frame, its JSON parts untouched; each kernel message is signed with
the local key and routed back to the socket identity that sent its parent request. The local
sockets outlive an upstream, so a jupyter_client restart swaps the sandbox behind them
while every client stays connected to the same ports.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import socket
import uuid
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.connect import KernelConnectionInfo
from tornado.httpclient import HTTPRequest
from tornado.netutil import DefaultLoopResolver
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from ._wire import (DELIM, V1_PROTOCOL, Signer, decode_v1, encode_v1, json_part, split_zmq,
                    welcome_parts)

log = logging.getLogger(__name__)

ROUTER_CHANNELS = ("shell", "control", "stdin")
MAX_ORIGINS = 10_000  # requests whose sender is remembered for routing replies
MAX_MESSAGE = 1 << 30  # frames from the gateway (large outputs are the gateway's to bound)


class LiteralResolver(DefaultLoopResolver):
    """Tornado's resolver, minus the executor thread it uses even for an IP address.

    A gateway is usually ``http://127.0.0.1:<port>``: resolving that is no lookup, but
    ``loop.getaddrinfo`` still hands it to a worker thread and back, one more wake-up on
    every kernel start (asyncio's own connections skip it the same way).
    """

    async def resolve(self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
                      ) -> list[tuple[int, Any]]:
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return await super().resolve(host, port, family)
        if address.version == 6:
            return [(socket.AF_INET6, (str(address), port, 0, 0))]
        return [(socket.AF_INET, (str(address), port))]


async def open_channels(url: str, headers: dict[str, str]) -> WebSocketClientConnection:
    """The sandbox's channels WebSocket, in the v1 protocol, with Nagle off (else ~40 ms per small message)."""
    request = HTTPRequest(url, headers=headers, connect_timeout=10, request_timeout=30)
    ws = await websocket_connect(request, subprotocols=[V1_PROTOCOL], max_message_size=MAX_MESSAGE,
                                 resolver=LiteralResolver())
    if ws.selected_subprotocol != V1_PROTOCOL:
        ws.close()
        raise ConnectionError(f"the gateway at {url} does not speak {V1_PROTOCOL}")
    stream = getattr(ws.protocol, "stream", None)
    if stream is not None:
        stream.set_nodelay(True)
    return ws


class ChannelBridge:
    """The five local sockets and the relay to one upstream WebSocket at a time.

    Created, used and closed on one event loop (the provisioner's bridge thread).
    """

    def __init__(self, key: bytes, context: zmq.asyncio.Context) -> None:
        self.signer = Signer(key)
        self.key = key
        self._sockets = {name: context.socket(zmq.ROUTER) for name in ROUTER_CHANNELS}
        self._iopub = context.socket(zmq.XPUB)
        self._iopub.setsockopt(zmq.XPUB_VERBOSE, 1)  # every subscriber is welcomed, not the first
        self._session = uuid.uuid4().hex
        self._hb = context.socket(zmq.REP)
        every = {**self._sockets, "iopub": self._iopub, "hb": self._hb}
        for sock in every.values():
            sock.linger = 0
        self.ports = {f"{name}_port": sock.bind_to_random_port("tcp://127.0.0.1")
                      for name, sock in every.items()}
        self._origins: collections.OrderedDict[str, list[bytes]] = collections.OrderedDict()
        self._outbox: asyncio.Queue[tuple[str, list[bytes]]] = asyncio.Queue()
        self._ws: WebSocketClientConnection | None = None
        self._attached = asyncio.Event()
        self._topic = b"kernel"
        self._tasks = [asyncio.ensure_future(self._from_client(name, sock))
                       for name, sock in self._sockets.items()]
        self._tasks += [asyncio.ensure_future(self._heartbeat()), asyncio.ensure_future(self._welcome()),
                        asyncio.ensure_future(self._to_upstream())]

    def connection_info(self) -> KernelConnectionInfo:
        """What jupyter_client needs to reach the local sockets."""
        ports = self.ports
        return {"shell_port": ports["shell_port"], "iopub_port": ports["iopub_port"],
                "stdin_port": ports["stdin_port"], "control_port": ports["control_port"],
                "hb_port": ports["hb_port"], "ip": "127.0.0.1", "transport": "tcp",
                "key": self.key,  # type: ignore[typeddict-item]  # bytes, as jupyter_client keeps it
                "signature_scheme": "hmac-sha256"}

    def attach(self, ws: WebSocketClientConnection, kernel_id: str) -> asyncio.Future[Any]:
        """Relay to ``ws``; the returned future ends when the WebSocket closes."""
        self._ws, self._topic = ws, f"kernel.{kernel_id}".encode()
        self._attached.set()
        return asyncio.ensure_future(self._from_upstream(ws))

    def detach(self) -> None:
        """Stop relaying; messages queued for the old kernel are dropped, not sent to the next."""
        self._attached.clear()
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()
        while not self._outbox.empty():
            self._outbox.get_nowait()

    def close(self) -> None:
        self.detach()
        for task in self._tasks:
            task.cancel()
        for sock in (*self._sockets.values(), self._iopub, self._hb):
            sock.close(linger=0)

    async def _from_client(self, channel: str, sock: zmq.asyncio.Socket) -> None:
        while True:
            frames = await sock.recv_multipart()
            try:
                idents, signature, parts = split_zmq(frames)
            except ValueError as exc:
                log.warning("sandcell bridge: dropped a malformed %s message: %s", channel, exc)
                continue
            if not self.signer.valid(signature, parts):
                log.warning("sandcell bridge: dropped a %s message with a bad signature", channel)
                continue
            header = json_part(parts[0])
            if not self._attached.is_set() and header.get("msg_type") == "shutdown_request":
                continue  # no kernel to shut down: never let it reach the next sandbox
            self._remember(header.get("msg_id"), idents)
            self._outbox.put_nowait((channel, parts))

    def _remember(self, msg_id: Any, idents: list[bytes]) -> None:
        if isinstance(msg_id, str):
            self._origins[msg_id] = idents
            if len(self._origins) > MAX_ORIGINS:
                self._origins.popitem(last=False)

    async def _to_upstream(self) -> None:
        while True:
            channel, parts = await self._outbox.get()
            await self._attached.wait()
            ws = self._ws
            if ws is None:
                continue
            try:
                await ws.write_message(encode_v1(channel, parts), binary=True)
            except WebSocketClosedError:
                pass  # the reader sees the close and the provisioner decides what it means

    async def _from_upstream(self, ws: WebSocketClientConnection) -> None:
        while True:
            data = await ws.read_message()
            if data is None:
                return
            if isinstance(data, str):
                continue  # v1 frames are binary; a text frame is not for us
            try:
                channel, parts = decode_v1(data)
            except ValueError as exc:
                log.warning("sandcell bridge: dropped a malformed frame from the gateway: %s", exc)
                continue
            if len(parts) >= 4:
                await self._deliver(channel, parts)

    async def _deliver(self, channel: str, parts: list[bytes]) -> None:
        signed = [DELIM, self.signer.sign(parts), *parts]
        if channel == "iopub":
            msg_type = json_part(parts[0]).get("msg_type", "")
            await self._iopub.send_multipart([self._topic + b"." + str(msg_type).encode(), *signed])
            return
        sock = self._sockets.get(channel)
        idents = self._origins.get(str(json_part(parts[1]).get("msg_id", "")))
        if sock is None or idents is None:
            log.debug("sandcell bridge: no client for a %s message; dropped", channel)
            return
        await sock.send_multipart([*idents, *signed])

    async def _welcome(self) -> None:
        """Welcome each new IOPub subscriber (JEP 65), as ipykernel does.

        A client's ``wait_for_ready()`` is done once a ``kernel_info`` reply and any IOPub
        message arrived; without a welcome it waited 0.2 s and asked again, because the
        kernel's status for the first request was published before its SUB had joined.
        """
        while True:
            frame = await self._iopub.recv()
            if frame[:1] == b"\x01":  # a subscription (b"\x00" is an unsubscription)
                parts = welcome_parts(frame[1:], self._session)
                await self._iopub.send_multipart([frame[1:] or self._topic, DELIM,
                                                  self.signer.sign(parts), *parts])

    async def _heartbeat(self) -> None:
        while True:
            await self._hb.send_multipart(await self._hb.recv_multipart())
