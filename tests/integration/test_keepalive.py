"""A refused request never breaks the keep-alive connection it came on.

A client with a connection pool (httpx, requests, a browser) sends its next request on the
connection a refusal came back on. Tornado used to close a connection whose request was
answered before its body was read, with the body unread (so the kernel sends a reset) and
without saying ``Connection: close``: the next request got ``ECONNRESET``, about one full
suite run in three. Each shape below is sent many times on one socket, each time followed by
a good request that must be answered on the same socket.
"""

from __future__ import annotations

import socket
import urllib.parse
from collections.abc import Iterator

import httpx
import pytest

from .conftest import Gateway

pytestmark = pytest.mark.docker

BODY = b'{"code": "1", "input": {}, "operand1": 1, "operand2": 2}'
MAX_BODY = 1 << 20  # the fixture gateway's max_body_size (the default)
# name: (method, path, authorised, body, expected status)
REFUSALS: dict[str, tuple[str, str, bool, bytes, int]] = {
    "unknown route": ("GET", "/api/v1/nothing", True, b"", 404),
    "unknown route, body": ("POST", "/api/v1/nothing", True, BODY, 404),
    "wrong token": ("GET", "/api/v1/sandboxes", False, b"", 401),
    "wrong token, body": ("POST", "/api/v1/sandboxes", False, BODY, 401),
    "not UTF-8": ("GET", "/api/v1/sandboxes/%ff%fe", True, b"", 400),
    "not UTF-8, body": ("POST", "/api/v1/sandboxes/%ff%fe/execute", True, BODY, 400),
    "not UTF-8, Jupyter, body": ("POST", "/api/kernels/%ff%fe/interrupt", True, BODY, 400),
    "unknown id, body": ("POST", "/api/v1/sandboxes/sbx_0000000000000000/execute", True,
                         b'{"code": "1"}', 404),
    "method not allowed, body": ("PUT", "/api/v1/sandboxes", True, BODY, 405),
    "bad JSON": ("POST", "/api/v1/sandboxes", True, b"{", 400),
    "body too large": ("POST", "/api/v1/sandboxes", True, b" " * (MAX_BODY + 1), 413),
    "body far past the server's cap": ("POST", "/api/v1/sandboxes", True,
                                       b" " * (8 * MAX_BODY), 413),
}
ROUNDS = 20


class Connection:
    """One HTTP/1.1 connection, read exactly: a response's end is its Content-Length."""

    def __init__(self, gateway: Gateway) -> None:
        address = urllib.parse.urlsplit(gateway.url)
        self.sock = socket.create_connection((address.hostname, address.port), timeout=30)
        self.token = gateway.token
        self.buffer = b""

    def send(self, method: str, path: str, body: bytes = b"", *, authorised: bool = True,
             chunked: bool = False) -> None:
        token = self.token if authorised else "wrong"
        # never both: a request with Transfer-Encoding and Content-Length is malformed (a
        # smuggling vector), and the gateway answers it with a 400 and a close
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
        head = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                f"{framing}\r\n\r\n")
        self.sock.sendall(head.encode() + body)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        head = self._until(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        body = self._exactly(int(headers.get("content-length", "0")))
        return int(status_line.split()[1]), headers, body

    def at_eof(self) -> bool:
        return not self.buffer and self.sock.recv(1) == b""

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)  # ConnectionResetError here is the bug this module catches
        assert chunk, "the gateway closed the keep-alive connection"
        self.buffer += chunk


@pytest.fixture
def connection(gateway: Gateway) -> Iterator[Connection]:
    conn = Connection(gateway)
    try:
        yield conn
    finally:
        conn.sock.close()


@pytest.mark.parametrize("shape", sorted(REFUSALS))
def test_the_next_request_after_a_refusal_is_answered(connection: Connection,
                                                      shape: str) -> None:
    method, path, authorised, body, expected = REFUSALS[shape]
    for _ in range(ROUNDS):
        connection.send(method, path, body, authorised=authorised)
        status, headers, _ = connection.response()
        assert status == expected, shape
        assert headers.get("connection", "").lower() != "close", headers
        connection.send("GET", "/api/v1/sandboxes")
        assert connection.response()[0] == 200, shape


def test_a_body_that_cannot_be_drained_is_answered_with_connection_close(
        connection: Connection) -> None:
    """A refused chunked body has no declared end to drain to: the response says so, and the
    connection then ends cleanly (all of the response arrives, then EOF, no reset), although
    the client is still sending when the gateway answers. The body sent is far more than the
    gateway reads with the headers, so without a lingering close most of it is unread when the
    socket closes, and the kernel answers it with a reset (which also fails this ``sendall``)."""
    connection.send("POST", "/api/v1/sandboxes", authorised=False, chunked=True)
    # the body has begun, and is not over: a chunk of 8 MiB, of which 2 MiB are sent
    connection.sock.sendall(b"%x\r\n" % (8 << 20) + b" " * (2 << 20))
    status, headers, body = connection.response()
    assert (status, headers["connection"].lower()) == (401, "close"), body
    assert b"unauthorized" in body
    assert connection.at_eof()


def test_a_pooling_client_sees_no_reset(gateway: Gateway) -> None:
    """The same with httpx's pool, as the suite's own fixtures use it."""
    with gateway.http() as http:
        for _ in range(ROUNDS):
            for method, path, authorised, body, expected in REFUSALS.values():
                headers = {} if authorised else {"Authorization": "Bearer wrong"}
                response = http.request(method, path, content=body, headers=headers)
                assert response.status_code == expected, (method, path, response.text)
            assert http.get("/api/v1/sandboxes").status_code == 200
