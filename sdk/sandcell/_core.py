"""The REST contract without the I/O: paths, bodies, headers, and error mapping.

Both clients call these, so a request looks the same whether it was sent by
``Client`` or ``AsyncClient``, and an error status maps to the same exception.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    SandcellError,
    ServiceUnavailableError,
)
from ._version import __version__

__all__ = [
    "SOCKET_OPTIONS",
    "create_body",
    "default_headers",
    "error_from_response",
    "execute_body",
    "health_path",
    "json_object",
    "sandbox_path",
    "save_notebook",
    "transport_errors",
]

API_PREFIX = "/api/v1"
# Execution output is many small writes; Nagle's algorithm would hold each one back
# for up to ~40 ms waiting for an ACK (see the design brief's latency notes). Recent
# httpcore sets this too; asking explicitly keeps it true for every httpcore version.
SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]

_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def sandbox_path(sandbox_id: str | None = None, action: str | None = None) -> str:
    """The URL path of the sandboxes collection, one sandbox, or one of its actions.

    >>> sandbox_path(), sandbox_path("sbx_1", "execute")
    ('/api/v1/sandboxes', '/api/v1/sandboxes/sbx_1/execute')
    """
    path = f"{API_PREFIX}/sandboxes"
    if sandbox_id is not None:
        path += "/" + quote(sandbox_id, safe="")
    if action is not None:
        path += "/" + action
    return path


def health_path() -> str:
    """The URL path of the gateway's health document.

    >>> health_path()
    '/api/v1/health'
    """
    return f"{API_PREFIX}/health"


def default_headers(token: str | None) -> dict[str, str]:
    """Headers sent with every request: the User-Agent and, when known, the token.

    >>> default_headers("t")["Authorization"]
    'Bearer t'
    """
    headers = {"User-Agent": f"sandcell-python/{__version__}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def create_body(
    template: str,
    timeout: float | None,
    env: Mapping[str, str] | None,
    metadata: Mapping[str, str] | None,
) -> dict[str, Any]:
    """The ``POST /sandboxes`` body; unset fields are left out so the gateway's defaults apply.

    >>> create_body("python", None, {"A": "1"}, None)
    {'template': 'python', 'env': {'A': '1'}}
    """
    body: dict[str, Any] = {"template": template}
    optional = {"timeout": timeout, "env": _dict(env), "metadata": _dict(metadata)}
    body.update({key: value for key, value in optional.items() if value is not None})
    return body


def execute_body(code: str, timeout: float | None) -> dict[str, Any]:
    """The ``POST /sandboxes/{id}/execute`` body.

    >>> execute_body("1+1", 30)
    {'code': '1+1', 'timeout': 30}
    """
    body: dict[str, Any] = {"code": code}
    if timeout is not None:
        body["timeout"] = timeout
    return body


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object; a gateway that sends anything else is broken."""
    try:
        payload = response.json()
    except ValueError as exc:
        raise SandcellError(f"the gateway sent a response that is not JSON: {response.text[:200]!r}") from exc
    if not isinstance(payload, dict):
        raise SandcellError(f"the gateway sent JSON that is not an object: {response.text[:200]!r}")
    return payload


def error_from_response(response: httpx.Response) -> APIStatusError:
    """The exception for an error response (its body must already be read).

    >>> error_from_response(httpx.Response(409, json={"error": {"code": "sandbox_closed", "message": "gone"}}))
    ConflictError('409 sandbox_closed: gone. Create a new session, or session.restart() for a fresh kernel.')
    """
    code, message, request_id = _error_fields(response)
    error_type = _STATUS_ERRORS.get(response.status_code)
    if error_type is None:
        error_type = InternalServerError if response.status_code >= 500 else APIStatusError
    return error_type(message, response=response, code=code, request_id=request_id)


def _error_fields(response: httpx.Response) -> tuple[str | None, str, str | None]:
    """``(code, message, request_id)`` from a JSON error body, or from what there is."""
    request_id = response.headers.get("X-Request-Id")
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if not isinstance(error, dict):
        text = response.text.strip()[:200]
        return None, text or response.reason_phrase or "no error message", request_id
    code = error.get("code")
    message = error.get("message")
    request_id = error.get("request_id") or request_id
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else response.reason_phrase,
        request_id if isinstance(request_id, str) else None,
    )


@contextlib.contextmanager
def transport_errors(base_url: str) -> Iterator[None]:
    """Turn httpx's network errors into ``APIConnectionError`` / ``APITimeoutError``."""
    try:
        yield
    except httpx.TimeoutException as exc:
        message = (
            f"the Sandcell gateway at {base_url} did not answer in time ({type(exc).__name__}). "
            "Pass a longer timeout=sandcell.Timeout(...) to the client, or check that the gateway is healthy."
        )
        raise APITimeoutError(message, url=base_url) from exc
    except httpx.TransportError as exc:
        message = (
            f"could not reach the Sandcell gateway at {base_url}: {exc or type(exc).__name__}. "
            "Start one with `sandcell serve` (or `make serve` in a checkout), or point "
            "SANDCELL_URL / base_url= at a running gateway."
        )
        raise APIConnectionError(message, url=base_url) from exc


def save_notebook(notebook: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``notebook`` as a ``.ipynb`` file (UTF-8, indented like Jupyter writes it).

    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     save_notebook({"nbformat": 4, "cells": []}, pathlib.Path(tmp, "run.ipynb"))
    ...     json.loads(pathlib.Path(tmp, "run.ipynb").read_text())["nbformat"]
    4
    """
    with open(path, "w", encoding="utf-8") as file:
        json.dump(notebook, file, indent=1, ensure_ascii=False)
        file.write("\n")


def _dict(mapping: Mapping[str, str] | None) -> dict[str, str] | None:
    return None if mapping is None else dict(mapping)
