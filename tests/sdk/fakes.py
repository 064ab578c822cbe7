"""A fake gateway at the HTTP boundary only, answering as docs/api.md says.

Used through ``httpx.MockTransport``, so the SDK's own request building,
streaming, parsing and error mapping all run for real.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

BASE_URL = "http://gateway.test"
TOKEN = "test-token"
REQUEST_ID = "req_test"
_SANDBOX = re.compile(r"^/api/v1/sandboxes/(?P<id>[^/]+)(?:/(?P<action>\w+))?$")


def event(seq: int, msg_type: str, **content: Any) -> dict[str, Any]:
    """One execute-stream event in the gateway's wire shape."""
    return {"seq": seq, "msg_type": msg_type, "content": content}


def ndjson(*events: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in events)


def error_response(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    body = {"error": {"code": code, "message": message, "request_id": REQUEST_ID}}
    return httpx.Response(status, json=body, headers={"X-Request-Id": REQUEST_ID, **headers})


def sandbox_json(sandbox_id: str, **fields: Any) -> dict[str, Any]:
    sandbox = {
        "id": sandbox_id,
        "template": "python",
        "state": "running",
        "created_at": "2026-11-23T10:00:00Z",
        "expires_at": "2026-11-23T11:00:00Z",
        "metadata": {},
    }
    sandbox.update(fields)
    return sandbox


def hello_events() -> list[dict[str, Any]]:
    """The events of ``print(1)`` exactly as the docs/api.md example shows them."""
    return [
        event(0, "status", execution_state="busy"),
        event(1, "execute_input", code="print(1)", execution_count=1),
        event(2, "stream", name="stdout", text="1\n"),
        event(3, "status", execution_state="idle"),
        event(4, "execute_reply", status="ok", execution_count=1),
    ]


class Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body sent piece by piece, only as the client reads it.

    Each piece sent is recorded in ``log`` as ``"sent <n>"``; ``error`` is raised
    after the last piece, like a connection that breaks mid-stream.
    """

    def __init__(self, pieces: list[bytes], log: list[str] | None = None, error: Exception | None = None) -> None:
        self.pieces = pieces
        self.log = log if log is not None else []
        self.error = error
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        for index, piece in enumerate(self.pieces):
            self.log.append(f"sent {index}")
            yield piece
        if self.error is not None:
            raise self.error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.__iter__():
            yield piece

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


class FakeGateway:
    """Sandboxes in a dict, execute bodies from a queue, every request recorded."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.requests: list[httpx.Request] = []
        self.sandboxes: dict[str, dict[str, Any]] = {}
        self.executions: list[Chunks] = []
        self.failures: dict[tuple[str, str], httpx.Response] = {}
        self.transport = httpx.MockTransport(self.handle)

    def add_sandbox(self, sandbox_id: str = "sbx_1", **fields: Any) -> dict[str, Any]:
        self.sandboxes[sandbox_id] = sandbox_json(sandbox_id, **fields)
        return self.sandboxes[sandbox_id]

    def queue_execution(self, *events: dict[str, Any]) -> Chunks:
        """The next execute answers with these events, one line per chunk."""
        return self.queue_chunks([ndjson(item) for item in events])

    def queue_chunks(self, pieces: list[bytes], error: Exception | None = None) -> Chunks:
        chunks = Chunks(pieces, error=error)
        self.executions.append(chunks)
        return chunks

    def fail(self, method: str, path: str, response: httpx.Response) -> None:
        """Answer the next ``method path`` with ``response``."""
        self.failures[(method, path)] = response

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        failure = self.failures.pop((request.method, request.url.path), None)
        if failure is not None:
            return failure
        if request.url.path == "/api/v1/health":
            return httpx.Response(200, json={"status": "ok", "version": "0.1.0", "pools": {}})
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return error_response(401, "unauthorized", "missing or wrong token")
        if request.url.path == "/api/v1/sandboxes":
            return self._collection(request)
        match = _SANDBOX.match(request.url.path)
        if match is None or match["id"] not in self.sandboxes:
            return error_response(404, "not_found", f"no sandbox {match['id'] if match else ''!r}")
        return self._sandbox(request, match["id"], match["action"])

    def _collection(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"sandboxes": list(self.sandboxes.values())})
        body = json.loads(request.content)
        sandbox_id = f"sbx_{len(self.sandboxes) + 1}"
        sandbox = self.add_sandbox(sandbox_id, template=body.get("template", "python"), metadata=body.get("metadata", {}))
        return httpx.Response(201, json=sandbox, headers={"X-Request-Id": REQUEST_ID})

    def _sandbox(self, request: httpx.Request, sandbox_id: str, action: str | None) -> httpx.Response:
        route = (request.method, action)
        if route == ("GET", None):
            return httpx.Response(200, json=self.sandboxes[sandbox_id])
        if route == ("DELETE", None):
            del self.sandboxes[sandbox_id]
            return httpx.Response(204)
        if route == ("POST", "interrupt"):
            return httpx.Response(204)
        if route == ("POST", "restart"):
            self.sandboxes[sandbox_id]["state"] = "running"
            return httpx.Response(200, json=self.sandboxes[sandbox_id])
        if route == ("POST", "execute"):
            headers = {"Content-Type": "application/x-ndjson", "X-Request-Id": REQUEST_ID}
            return httpx.Response(200, headers=headers, stream=self.executions.pop(0))
        return error_response(405, "method_not_allowed", f"{request.method} is not allowed here")

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        """The recorded requests with this method and path."""
        return [r for r in self.requests if r.method == method and r.url.path == path]
