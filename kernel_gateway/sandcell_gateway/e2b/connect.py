"""The Connect protocol's JSON codec, as E2B's SDK speaks it to envd: pure functions, no I/O.

Unary calls are a JSON body each way (``application/json``); an error is a non-200 status with
``{"code", "message"}``. A server stream answers ``application/connect+json`` with
5-byte-framed messages (flags, big-endian length) and ends with an end-of-stream frame
(flags ``0x02``) holding ``{}`` or ``{"error": {...}}``; its request is one framed message.

>>> frame = envelope({"a": 1})
>>> frame
b'\\x00\\x00\\x00\\x00\\x08{"a": 1}'
>>> read_envelope(frame)
{'a': 1}
>>> end_of_stream(ConnectError("not_found", "no such process"))
b'\\x02\\x00\\x00\\x00>{"error": {"code": "not_found", "message": "no such process"}}'
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from typing import Any

from ..errors import GatewayError

UNARY = "application/json"
STREAM = "application/connect+json"
END_STREAM = 0x02
_HEADER = struct.Struct(">BI")

# Connect's codes and the HTTP status a unary error carries (connectrpc.com/docs/protocol)
HTTP_STATUS = {"canceled": 499, "unknown": 500, "invalid_argument": 400,
               "deadline_exceeded": 504, "not_found": 404, "already_exists": 409,
               "permission_denied": 403, "resource_exhausted": 429,
               "failed_precondition": 400, "aborted": 409, "out_of_range": 400,
               "unimplemented": 501, "internal": 500, "unavailable": 503,
               "data_loss": 500, "unauthenticated": 401}
# a gateway error's HTTP status -> the Connect code that makes the SDK raise the same thing
_BY_STATUS = {400: "invalid_argument", 401: "unauthenticated", 403: "permission_denied",
              404: "not_found", 409: "failed_precondition", 413: "resource_exhausted",
              429: "resource_exhausted", 502: "unavailable", 503: "unavailable",
              507: "resource_exhausted"}
_BY_CODE = {"file_exists": "already_exists", "kernel_died": "unavailable",
            "command_finished": "not_found", "command_not_found": "not_found",
            "sandbox_removed": "unavailable", "no_agent": "failed_precondition"}


class ConnectError(Exception):
    """A call's failure, in Connect's terms: a code from :data:`HTTP_STATUS` and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message

    @property
    def status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def from_gateway_error(exc: GatewayError) -> ConnectError:
    """The gateway's error as the Connect code E2B's SDK maps to its matching exception.

    >>> from ..errors import NotFound
    >>> from_gateway_error(NotFound("no file 'x'", code="file_not_found")).code
    'not_found'
    """
    code = _BY_CODE.get(exc.code) or _BY_STATUS.get(exc.status, "internal")
    return ConnectError(code, exc.message)


def envelope(message: dict[str, Any], flags: int = 0) -> bytes:
    data = json.dumps(message).encode()
    return _HEADER.pack(flags, len(data)) + data


def end_of_stream(error: ConnectError | None = None) -> bytes:
    return envelope({"error": error.to_json()} if error else {}, END_STREAM)


def read_envelope(body: bytes) -> dict[str, Any]:
    """The one message of a server-stream request; a malformed frame is ``invalid_argument``."""
    if len(body) < _HEADER.size:
        raise ConnectError("invalid_argument", "a streaming request needs one framed message")
    flags, length = _HEADER.unpack_from(body)
    if flags & 0x01:
        raise ConnectError("invalid_argument", "compressed messages are not supported")
    if len(body) != _HEADER.size + length:
        raise ConnectError("invalid_argument", "the request's frame length does not match")
    return parse_json(body[_HEADER.size:])


def parse_json(data: bytes) -> dict[str, Any]:
    """A request message: a JSON object (``{}`` for an empty body)."""
    try:
        message = json.loads(data or b"{}")
    except (UnicodeDecodeError, ValueError):
        raise ConnectError("invalid_argument", "the request is not JSON") from None
    if not isinstance(message, dict):
        raise ConnectError("invalid_argument", "the request must be a JSON object")
    return message


def field(message: dict[str, Any], name: str, default: Any = None) -> Any:
    """A field by its JSON name (lowerCamelCase) or its proto name: Connect accepts both.

    >>> field({"exitCode": 1}, "exit_code"), field({"exit_code": 2}, "exit_code")
    (1, 2)
    """
    camel = name.split("_")[0] + "".join(p.title() for p in name.split("_")[1:])
    value = message.get(camel, message.get(name, default))
    return default if value is None else value


def text_field(message: dict[str, Any], name: str) -> str:
    value = field(message, name, "")
    if not isinstance(value, str):
        raise ConnectError("invalid_argument", f"field {name!r} must be a string")
    return value


def object_field(message: dict[str, Any], name: str) -> dict[str, Any]:
    value = field(message, name, {})
    if not isinstance(value, dict):
        raise ConnectError("invalid_argument", f"field {name!r} must be an object")
    return value


def bytes_field(message: dict[str, Any], name: str) -> bytes:
    """A ``bytes`` field: base64 in proto JSON (standard or URL-safe, padded or not)."""
    value = text_field(message, name)
    try:
        return base64.b64decode(value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4),
                                validate=True)
    except (binascii.Error, ValueError):
        raise ConnectError("invalid_argument", f"field {name!r} is not base64") from None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
