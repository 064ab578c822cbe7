"""Facts of the gateway's wire formats, each stated once: ids (and the spelling Jupyter routes
need) and timestamps.

>>> is_sandbox_id(new_sandbox_id()), is_sandbox_id("sbx_../../etc")
(True, False)
>>> iso_time(0.25), iso_time(0.25, digits=9)
('1970-01-01T00:00:00.250000Z', '1970-01-01T00:00:00.250000000Z')
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


COMMAND_ID_PATTERN = r"^cmd_[0-9a-f]{16}$"  # a command in a sandbox (the OpenAPI pattern too)
_COMMAND_ID = re.compile(COMMAND_ID_PATTERN)


def new_command_id() -> str:
    return "cmd_" + secrets.token_hex(8)


def new_invocation_id() -> str:
    """A plugin invocation's id (its ``started`` event names it)."""
    return "inv_" + secrets.token_hex(8)


def is_command_id(text: str) -> bool:
    return _COMMAND_ID.fullmatch(text) is not None


def is_sandbox_id(text: str) -> bool:
    return _SANDBOX_ID.fullmatch(text) is not None  # match() would let a trailing "\n" through


def kernel_id_of(sandbox_id: str) -> str:
    """The sandbox's id in the hyphenated shape Jupyter Server's routes accept.

    Jupyter Server (and so ``jupyter server --gateway-url``) routes ``/api/kernels/{id}`` only
    for ids of five ``-``-separated words; ``sbx_0123456789abcdef`` is served as
    ``sbx-0123-4567-89ab-cdef``. Both spellings name the same sandbox on every Jupyter route.
    """
    if not sandbox_id.startswith(SANDBOX_ID_PREFIX):
        return sandbox_id
    hexpart = sandbox_id[len(SANDBOX_ID_PREFIX):]
    return "sbx-" + "-".join(hexpart[i:i + 4] for i in range(0, len(hexpart), 4))


def sandbox_id_of(kernel_id: str) -> str:
    """Inverse of :func:`kernel_id_of`; a plain sandbox id passes through."""
    if kernel_id.startswith("sbx-"):
        return SANDBOX_ID_PREFIX + kernel_id[4:].replace("-", "")
    return kernel_id


def iso_time(ts: float, digits: int = 6) -> str:
    """UTC ISO 8601 with microseconds and ``Z``, as Jupyter writes times: every timestamp the
    gateway sends (REST models, Jupyter kernel models and message headers, notebook metadata).

    ``digits=9``: the same format to the nanosecond, as the E2B surface spells a file's
    ``modifiedTime`` (e2b/models.py).
    """
    fraction = int(ts % 1 * 10 ** digits)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{fraction:0{digits}d}Z"
