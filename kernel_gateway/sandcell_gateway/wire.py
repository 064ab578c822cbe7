"""Facts of the gateway's wire formats, each stated once: sandbox ids and timestamps.

>>> is_sandbox_id(new_sandbox_id()), is_sandbox_id("sbx_../../etc")
(True, False)
>>> iso_time(0.25)
'1970-01-01T00:00:00.250000Z'
"""

from __future__ import annotations

import re
import secrets
import time

SANDBOX_ID_PREFIX = "sbx_"
SANDBOX_ID_PATTERN = r"^sbx_[0-9a-f]{16}$"  # also the OpenAPI document's path pattern
_SANDBOX_ID = re.compile(SANDBOX_ID_PATTERN)


def new_sandbox_id() -> str:
    return SANDBOX_ID_PREFIX + secrets.token_hex(8)


def new_worker_id() -> str:
    """A plugin worker's id (``started`` events name it; its container carries it)."""
    return "wkr_" + secrets.token_hex(8)


def is_sandbox_id(text: str) -> bool:
    return _SANDBOX_ID.fullmatch(text) is not None  # match() would let a trailing "\n" through


def iso_time(ts: float) -> str:
    """UTC ISO 8601 with microseconds and ``Z``, as Jupyter writes times: every timestamp the
    gateway sends (REST models, Jupyter kernel models and message headers, notebook metadata)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}Z"
