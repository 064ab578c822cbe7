"""Distrust of what a kernel sends: a relay between each kernel socket and the gateway's ZMQ.

User code runs in the kernel process, so it holds the kernel's sockets and session key:
everything a kernel sends is attacker-controlled input. ZMQ's ``MAXMSGSIZE`` bounds one
message *part*, but a message of many parts is still assembled whole in the receiver's memory
(measured: 400 parts of 512 KiB grew the receiver by 200 MiB). So every byte from a kernel
first passes a small relay on the event loop that follows ZMTP 3 framing (:class:`FrameCounter`,
no message is ever held: frames are counted from their headers and passed on in chunks) and:

* cuts the kernel off when one message's parts add up past ``max_kernel_message_bytes``,
  before any of that part's body reaches ZMQ (the sandbox dies: "output message over the
  limit");
* caps each sandbox's message and byte rate (token buckets; over the rate the relay stops
  reading, so the kernel's own sockets back up, not the gateway's memory);
* keeps each sandbox's unconsumed bytes under a small window, and lets a message past
  ``SMALL`` bytes through only with one of ``BIG_SLOTS`` gateway-wide slots (and the
  sandbox's own one), so a few big messages at most are in flight whatever N sandboxes do.

Memory held for kernels is therefore bounded by construction (docs/api.md, the limits table
under "Tenants and limits"): about ``BIG_SLOTS x 3 x limit`` gateway-wide plus
``WINDOW + 5 x SMALL`` per sandbox, not N x limit.

Example::

    guard = KernelGuard(MessageLimits(max_bytes=64 << 20), Path("/tmp/relays"))
    sandbox = guard.sandbox("sbx_0123456789abcdef", on_violation=print)
    path = sandbox.relay("iopub", "/tmp/sandcell-0/gw/sbx_.../k-2")
    # connect the gateway's ZMQ socket to ipc://{path}; after each received message:
    sandbox.consumed(size)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

from .tenants import TokenBucket

log = logging.getLogger(__name__)

GREETING = 64  # ZMTP 3 greeting: signature, version, mechanism, as-server, filler
MORE, LONG, COMMAND = 0x01, 0x02, 0x04
MAX_COMMAND = 64 << 10  # READY / PING bodies are tiny; a huge "command" is an attack
CHUNK = 64 << 10  # bytes read from a kernel at a time
SMALL = 1 << 20  # a message past this needs a big-message slot
WINDOW = 4 << 20  # a sandbox's completed, not yet consumed bytes before its relay pauses
BIG_SLOTS = 2  # big messages in flight at once, all sandboxes together
STALL = 10.0  # seconds a big message may take to arrive once it holds a slot
OVER_LIMIT = "output message over the limit"


class Violation(Exception):
    """The kernel broke the transport's rules; the message says which (a death reason)."""


@dataclasses.dataclass(frozen=True)
class MessageLimits:
    """What one kernel may send: per message, and per second (sustained; bursts of a second).

    >>> MessageLimits(max_bytes=1 << 20).messages_per_second
    200.0
    """

    max_bytes: int = 64 << 20
    messages_per_second: float = 200.0
    bytes_per_second: float = 64 << 20


class FrameCounter:
    """Follows the ZMTP 3 frames of one kernel-to-gateway byte stream, holding none of them.

    ``feed`` takes the next bytes and returns, for each message they completed, where it ends
    in them and its total size; it raises :class:`Violation` for a message over ``limit`` (as
    soon as a frame header announces it: its body is never let through) or for a stream that
    is not ZMTP 3.

    >>> counter = FrameCounter(limit=10)
    >>> counter.feed(GREETING_EXAMPLE + bytes([MORE, 3]) + b"abc" + bytes([0, 2]) + b"de\\0")
    [(73, 5)]
    >>> counter.current
    0
    >>> counter.feed(bytes([11]))
    Traceback (most recent call last):
    ...
    sandcell_gateway.guard.Violation: output message over the limit: a message of at least 11 bytes (max_kernel_message_bytes is 10)
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.current = 0  # bytes of the message in progress, as its frame headers announced
        self._greeting = bytearray()
        self._header = bytearray()
        self._body_left = 0
        self._ends_message = False

    def feed(self, data: bytes) -> list[tuple[int, int]]:
        done: list[tuple[int, int]] = []
        i = self._take_greeting(data)
        n = len(data)
        while i < n:
            if self._body_left:
                take = min(self._body_left, n - i)
                self._body_left -= take
                i += take
                if not self._body_left:
                    self._frame_done(done, i)
                continue
            i = self._take_header(data, i, done)
        return done

    def _take_greeting(self, data: bytes) -> int:
        if len(self._greeting) >= GREETING:
            return 0
        take = min(GREETING - len(self._greeting), len(data))
        self._greeting += data[:take]
        greeting = self._greeting
        if bytes(greeting[:1]) not in (b"", b"\xff") or (len(greeting) > 9 and greeting[9] != 0x7F) \
                or (len(greeting) > 10 and greeting[10] < 3):
            raise Violation("the kernel's socket does not speak ZMTP 3")
        return take

    def _take_header(self, data: bytes, i: int, done: list[tuple[int, int]]) -> int:
        self._header.append(data[i])
        need = 9 if self._header[0] & LONG else 2
        take = min(need - len(self._header), len(data) - i - 1)
        self._header += data[i + 1:i + 1 + take]
        if len(self._header) < need:
            return i + 1 + take
        flags, size = self._header[0], int.from_bytes(self._header[1:need], "big")
        self._header.clear()
        self._start_frame(flags, size)
        if not size:
            self._frame_done(done, i + 1 + take)
        return i + 1 + take

    def _start_frame(self, flags: int, size: int) -> None:
        if flags & ~(MORE | LONG | COMMAND) or (flags & COMMAND and flags & MORE):
            raise Violation(f"the kernel sent a malformed ZMTP frame (flags {flags:#x})")
        if flags & COMMAND:
            if size > MAX_COMMAND:
                raise Violation(f"the kernel sent a ZMTP command of {size} bytes")
            self._ends_message = False
        else:
            self.current += size
            if self.current > self.limit:
                raise Violation(f"{OVER_LIMIT}: a message of at least {self.current} bytes "
                                f"(max_kernel_message_bytes is {self.limit})")
            self._ends_message = not flags & MORE
        self._body_left = size

    def _frame_done(self, done: list[tuple[int, int]], end: int) -> None:
        if self._ends_message:
            done.append((end, self.current))
            self.current = 0
            self._ends_message = False


# a valid greeting, for examples and tests: signature, version 3.1, NULL, not as-server
GREETING_EXAMPLE = (b"\xff" + bytes(8) + b"\x7f" + bytes([3, 1]) + b"NULL".ljust(20, b"\0")
                    + bytes(32))


class KernelGuard:
    """The gateway's relays: its limits, the big-message slots, and where relay sockets live.

    ``directory`` is the gateway's own (never mounted into a container): a kernel cannot
    reach the relay sockets, only its own ends of them.
    """

    def __init__(self, limits: MessageLimits, directory: Path) -> None:
        self.limits = limits
        self.directory = directory
        self._big: asyncio.Semaphore | None = None

    @property
    def big_slots(self) -> asyncio.Semaphore:
        if self._big is None:  # made on the loop that uses it
            self._big = asyncio.Semaphore(BIG_SLOTS)
        return self._big

    def sandbox(self, name: str, on_violation: Callable[[str], None]) -> SandboxGuard:
        return SandboxGuard(self, name, on_violation)

    def reset(self) -> None:
        """Remove relay sockets a previous run left; make the directory (mode 0700)."""
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True, mode=0o700)


class SandboxGuard:
    """The relays of one kernel's sockets, its rate buckets, and its share of memory."""

    def __init__(self, guard: KernelGuard, name: str, on_violation: Callable[[str], None]) -> None:
        self._guard = guard
        self._name = name
        self._on_violation = on_violation
        limits = guard.limits
        self._messages = TokenBucket(limits.messages_per_second, int(limits.messages_per_second))
        self._bytes = TokenBucket(limits.bytes_per_second,
                                  int(max(limits.bytes_per_second, limits.max_bytes)))
        self._big_lock = asyncio.Lock()  # one big message at a time per sandbox
        self._owed = 0  # big slots held by messages not yet consumed
        self._unconsumed = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._relays: list[_Relay] = []
        self.violation = ""

    def relay(self, channel: str, kernel_path: str) -> str:
        """Relay ``kernel_path`` (a kernel's ipc socket); return the path to connect to.

        The socket listens at once (a ZMQ connect queues in its backlog); it serves as soon
        as the loop runs.
        """
        path = str(self._guard.directory / f"{self._name}-{channel}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(8)
        relay = _Relay(self, kernel_path)
        relay.serve(listener)
        self._relays.append(relay)
        return path

    @property
    def unconsumed(self) -> int:
        """Bytes of complete messages passed on that the gateway has not read yet."""
        return self._unconsumed

    async def admit(self) -> None:
        """Wait while the sandbox is over its rates or its window of unconsumed bytes."""
        await self._drained.wait()
        wait = max(self._messages.debt(), self._bytes.debt())
        if wait > 0:
            await asyncio.sleep(wait)

    def forwarded(self, size: int, message: int | None) -> None:
        """``size`` bytes go on to the gateway; ``message``: the size of the one they complete."""
        self._bytes.spend(size)
        if message is not None:
            self._messages.spend(1)
            self._unconsumed += message
            if self._unconsumed > WINDOW:
                self._drained.clear()

    async def take_big_slot(self) -> None:
        await self._big_lock.acquire()
        try:
            await self._guard.big_slots.acquire()
        except BaseException:
            self._big_lock.release()
            raise

    def owe(self) -> None:
        """A message holding a big slot arrived whole: the slot is freed when it is consumed."""
        self._owed += 1

    def consumed(self, size: int) -> None:
        """The gateway read a message of ``size`` bytes from one of this kernel's sockets."""
        self._unconsumed = max(0, self._unconsumed - size)
        if self._unconsumed <= WINDOW:
            self._drained.set()
        if size > SMALL and self._owed:
            self._owed -= 1
            self._free_big_slot()

    def _free_big_slot(self) -> None:
        self._guard.big_slots.release()
        self._big_lock.release()

    def cut(self, reason: str) -> None:
        """The kernel broke a rule: stop relaying every socket and report it once."""
        if self.violation:
            return
        self.violation = reason
        log.warning("kernel %s cut off: %s", self._name, reason)
        self.close()
        self._on_violation(reason)

    def close(self) -> None:
        for relay in self._relays:
            relay.close()
        self._relays.clear()
        while self._owed:
            self._owed -= 1
            self._free_big_slot()
        self._drained.set()


class _Relay:
    """One kernel socket: the gateway's ZMQ connects here, the relay connects to the kernel.

    Gateway-to-kernel bytes pass as they are (they are ours); kernel-to-gateway bytes pass
    only through :class:`FrameCounter` and the sandbox's admission.
    """

    def __init__(self, owner: SandboxGuard, kernel_path: str) -> None:
        self._owner = owner
        self._kernel_path = kernel_path
        self._server: asyncio.Future[asyncio.Server] | None = None
        self._busy = False
        self._closed = False
        self._holding = False  # the message in progress holds a big slot
        self._tasks: set[asyncio.Task[None]] = set()

    async def accepted(self, zmq_reader: asyncio.StreamReader,
                       zmq_writer: asyncio.StreamWriter) -> None:
        if self._busy or self._closed:  # ZMQ makes one connection; nobody else may
            zmq_writer.close()
            return
        self._busy = True
        try:
            try:
                kernel_reader, kernel_writer = await asyncio.open_unix_connection(
                    self._kernel_path, limit=CHUNK)
            except OSError:
                return  # the kernel is not listening (yet, or any more): ZMQ retries in 20 ms
            try:
                await self._pump(zmq_reader, zmq_writer, kernel_reader, kernel_writer)
            finally:
                kernel_writer.close()
        except asyncio.CancelledError:
            pass  # closed: the connection ends here (asyncio would log a cancelled handler)
        finally:
            zmq_writer.close()
            self._release_current()
            self._busy = False

    async def _pump(self, zmq_reader: asyncio.StreamReader, zmq_writer: asyncio.StreamWriter,
                    kernel_reader: asyncio.StreamReader,
                    kernel_writer: asyncio.StreamWriter) -> None:
        up = asyncio.ensure_future(_copy(zmq_reader, kernel_writer))
        down = asyncio.ensure_future(self._guarded(kernel_reader, zmq_writer))
        self._tasks |= {up, down}
        try:
            done, _ = await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
                self._tasks.discard(task)
        # the other direction is only being cancelled: nothing to read from it yet
        errors = [task.exception() for task in done if not task.cancelled()]
        violation = next((e for e in errors if isinstance(e, Violation)), None)
        if violation is not None:
            self._owner.cut(str(violation))

    async def _guarded(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counter = FrameCounter(self._owner._guard.limits.max_bytes)
        loop = asyncio.get_running_loop()
        stall_at = None
        while True:
            await self._owner.admit()
            try:
                async with asyncio.timeout_at(stall_at):
                    data = await reader.read(CHUNK)
            except TimeoutError:
                raise Violation(f"output message stalled: a message over {SMALL} bytes took "
                                f"more than {STALL:g} s to arrive") from None
            if not data:
                return
            # A chunk may end one message and start the next: each piece goes on by itself, so
            # a big message's last bytes never wait for the slot the next one needs (the slot
            # it holds is freed only once the gateway has read it).
            start = 0
            for end, size in counter.feed(data):
                await self._forward(writer, data[start:end], size, complete=True)
                start = end
            if start < len(data):
                await self._forward(writer, data[start:], counter.current, complete=False)
            if not self._holding:
                stall_at = None
            elif stall_at is None:
                stall_at = loop.time() + STALL
            await writer.drain()

    async def _forward(self, writer: asyncio.StreamWriter, piece: bytes, size: int,
                       complete: bool) -> None:
        """Pass ``piece``, bytes of one message (``size`` so far), once it may go on: a big
        message takes a big slot first. It is counted before it is written, so the gateway
        can never consume it before it is counted."""
        if size > SMALL and not self._holding:
            await self._owner.take_big_slot()
            self._holding = True
        if complete and self._holding:
            self._owner.owe()  # freed when the gateway has read it
            self._holding = False
        self._owner.forwarded(len(piece), size if complete else None)
        writer.write(piece)

    def _release_current(self) -> None:
        if self._holding:
            self._holding = False
            self._owner._free_big_slot()

    def serve(self, listener: socket.socket) -> None:
        self._server = asyncio.ensure_future(
            asyncio.start_unix_server(self.accepted, sock=listener, limit=CHUNK))

    def close(self) -> None:
        self._closed = True
        if self._server is not None:
            self._server.add_done_callback(_close_server)
        for task in list(self._tasks):
            task.cancel()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()


def _close_server(future: asyncio.Future[asyncio.Server]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()
