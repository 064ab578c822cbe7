"""The two wire formats the bridge translates between, as pure functions.

Local side: Jupyter's ZMQ framing ``[identities..., b"<IDS|MSG>", signature, header,
parent_header, metadata, content, buffers...]``, signed with HMAC-SHA256 and the key the
kernel manager holds. Gateway side: the ``v1.kernel.websocket.jupyter.org`` binary frame
(little-endian 64-bit offsets, the channel name, then the same four JSON parts and buffers),
which carries the JSON parts unchanged, so relaying never re-encodes a message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import uuid
from datetime import datetime, timezone
from typing import Any

DELIM = b"<IDS|MSG>"
V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"


class Signer:
    """HMAC-SHA256 over the four JSON parts, as ``jupyter_client.session.Session`` signs.

    >>> signer = Signer(b"k")
    >>> parts = [b"{}", b"{}", b"{}", b"{}"]
    >>> signer.valid(signer.sign(parts), parts), signer.valid(b"0" * 64, parts)
    (True, False)
    """

    def __init__(self, key: bytes) -> None:
        self._auth = hmac.new(key, digestmod=hashlib.sha256)

    def sign(self, parts: list[bytes]) -> bytes:
        mac = self._auth.copy()
        for part in parts[:4]:
            mac.update(part)
        return mac.hexdigest().encode()

    def valid(self, signature: bytes, parts: list[bytes]) -> bool:
        return hmac.compare_digest(signature, self.sign(parts))


def split_zmq(frames: list[bytes]) -> tuple[list[bytes], bytes, list[bytes]]:
    """``(identities, signature, parts)`` of a ZMQ message (``ValueError`` if malformed).

    >>> split_zmq([b"id", DELIM, b"sig", b"h", b"p", b"m", b"c"])
    ([b'id'], b'sig', [b'h', b'p', b'm', b'c'])
    """
    try:
        at = frames.index(DELIM)
    except ValueError:
        raise ValueError("no <IDS|MSG> delimiter") from None
    if len(frames) < at + 6:
        raise ValueError("fewer than four message parts after the signature")
    return frames[:at], frames[at + 1], frames[at + 2:]


def encode_v1(channel: str, parts: list[bytes]) -> bytes:
    """Frame ``parts`` for the v1 subprotocol.

    >>> decode_v1(encode_v1("shell", [b"h", b"p", b"m", b"c"]))
    ('shell', [b'h', b'p', b'm', b'c'])
    """
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


def welcome_parts(subscription: bytes, session: str) -> list[bytes]:
    """The four JSON parts of an ``iopub_welcome`` (JEP 65), as ipykernel sends a new subscriber.

    >>> header, parent, metadata, content = welcome_parts(b"", "s")
    >>> json_part(header)["msg_type"], parent, json_part(content)
    ('iopub_welcome', b'{}', {'subscription': ''})
    """
    header = {"msg_id": uuid.uuid4().hex, "msg_type": "iopub_welcome", "username": "sandcell",
              "session": session, "date": datetime.now(timezone.utc).isoformat(), "version": "5.4"}
    content = {"subscription": subscription.decode("utf-8", "replace")}
    return [json.dumps(header).encode(), b"{}", b"{}", json.dumps(content).encode()]


def json_part(part: bytes) -> dict[str, Any]:
    """A JSON part as a dict; ``{}`` when it is not a JSON object.

    >>> json_part(b'{"msg_id": "a"}'), json_part(b"[1]"), json_part(b"x")
    ({'msg_id': 'a'}, {}, {})
    """
    try:
        value = json.loads(part)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}
