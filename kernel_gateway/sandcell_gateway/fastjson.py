"""JSON encoding for the hot paths: streamed events and recorded outputs.

orjson encodes a 1 MB stdout chunk about 7x faster than ``json`` (1.15 GB/s against 155 MB/s
on this machine: ``json`` escapes each newline in Python's slower path), and a cell's output
is encoded twice, for the client and for the history. What orjson refuses (an integer beyond
64 bits in some kernel metadata) falls back to ``json``.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """``value`` as compact JSON bytes."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


def ndjson_line(value: Any) -> bytes:
    """One NDJSON line: ``value`` as JSON, then a newline."""
    try:
        return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode() + b"\n"
