"""Closing a client's connection while the client may still be sending, without a reset.

Closing a socket with received bytes still unread makes the kernel answer with a reset (RST)
instead of a FIN. The reset can overtake what the gateway sent last, and a client that is
still writing gets EPIPE or ECONNRESET and drops what it had not read yet: a refused
request's response, or the 1009 close frame owed to an oversized WebSocket message. So the
gateway closes as Apache and nginx do (a "lingering close"): it half-closes (the client reads
everything, then EOF), reads and drops whatever still arrives, and closes at the client's EOF
or after ``LINGER_SECONDS``, whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import tornado.iostream

# How long a closing connection goes on reading (and dropping) what the client still sends
# (nginx's lingering_timeout is the same).
LINGER_SECONDS = 5.0

_draining: set[asyncio.Task[None]] = set()  # held, so a drain is never garbage-collected


def half_close(stream: tornado.iostream.IOStream) -> None:
    """For a stream tornado goes on reading (an HTTP request body it drops): send the FIN now,
    and close after ``LINGER_SECONDS`` if the client has not closed by then."""
    if stream.closed():
        return
    try:
        stream.socket.shutdown(socket.SHUT_WR)
    except OSError:  # the client is gone already
        stream.close()
        return
    stream.io_loop.call_later(LINGER_SECONDS, stream.close)


def linger(stream: tornado.iostream.IOStream) -> None:
    """For a stream tornado is about to close (an aborted WebSocket): keep the socket open past
    that close on a second handle, then half-close it and drain it in the background."""
    if stream.closed():
        return
    try:
        held = stream.socket.dup()
    except OSError:
        return
    held.setblocking(False)
    task = asyncio.ensure_future(_drain(held))
    _draining.add(task)
    task.add_done_callback(_draining.discard)


async def _drain(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    try:
        # tornado has closed its own handle by now (this runs after the abort), and its last
        # frame went out with it
        sock.shutdown(socket.SHUT_WR)
        async with asyncio.timeout(LINGER_SECONDS):
            while await loop.sock_recv(sock, 1 << 16):
                pass
    except (OSError, TimeoutError):
        pass  # the client reset or stayed: nothing more is owed to it
    finally:
        with contextlib.suppress(OSError):
            sock.close()
