"""Where the SDK finds its gateway, and how long it waits for it.

Precedence, field by field: keyword arguments, then the environment
(``SANDCELL_URL``, ``SANDCELL_TOKEN``), then the runtime file a gateway on this
machine writes, then ``http://127.0.0.1:8765``. A runtime file's token is only
used for that file's own URL, so a token never leaks to another gateway.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Union

import httpx

__all__ = ["ClientConfig", "RuntimeFile", "Timeout", "find_gateway", "pid_alive", "runtime_dir"]

DEFAULT_BASE_URL = "http://127.0.0.1:8765"
# How much longer than an execution's own timeout the client waits for the next
# line: the gateway interrupts the kernel at the timeout, then waits for its reply.
EXECUTE_TIMEOUT_MARGIN = 10.0


@dataclass(frozen=True)
class Timeout:
    """How long the client waits on the network, in seconds (``None``: forever).

    ``read`` bounds the silence between two pieces of a response. An execute
    stream waits at least its own ``timeout`` plus a margin, and forever when
    the call has no timeout, so quiet long-running code is never cut off.

    >>> Timeout(read=60)
    Timeout(connect=5.0, read=60, write=30.0)
    >>> Timeout.coerce(10) == Timeout(connect=10, read=10, write=10)
    True
    >>> Timeout().for_execution(30).read
    40.0
    """

    connect: float | None = 5.0
    read: float | None = 30.0
    write: float | None = 30.0

    @classmethod
    def coerce(cls, value: TimeoutTypes) -> Timeout:
        """A ``Timeout`` from a ``Timeout`` or one number for all three phases."""
        if isinstance(value, Timeout):
            return value
        return cls(connect=value, read=value, write=value)

    def for_execution(self, seconds: float | None) -> Timeout:
        """The timeout for an execute stream whose own limit is ``seconds``."""
        if seconds is None:
            return replace(self, read=None)
        if self.read is None:
            return self
        return replace(self, read=max(self.read, seconds + EXECUTE_TIMEOUT_MARGIN))

    def as_httpx(self) -> httpx.Timeout:
        """The equivalent ``httpx.Timeout`` (waiting for a pooled connection counts as connect)."""
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.connect)


TimeoutTypes = Union[Timeout, float, None]
DEFAULT_TIMEOUT = Timeout()


@dataclass(frozen=True)
class RuntimeFile:
    """What a running gateway wrote about itself to ``gateway-<port>.json``.

    >>> RuntimeFile.parse({"url": "http://127.0.0.1:8765", "token": "t", "pid": 42, "started_at": 1.5})
    RuntimeFile(url='http://127.0.0.1:8765', pid=42, started_at=1.5)
    """

    url: str
    token: str | None = field(repr=False)
    pid: int
    started_at: float

    @classmethod
    def parse(cls, data: Any) -> RuntimeFile | None:
        """The runtime file in ``data``, or ``None`` when it is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            return None
        pid, started_at = data.get("pid"), _timestamp(data.get("started_at"))
        if not isinstance(pid, int) or started_at is None:
            return None
        token = data.get("token")
        return cls(data["url"], token if isinstance(token, str) else None, pid, started_at)

    @classmethod
    def load(cls, path: Path) -> RuntimeFile | None:
        """The runtime file at ``path``, or ``None`` when it is unreadable or malformed."""
        try:
            return cls.parse(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return None


@dataclass(frozen=True)
class ClientConfig:
    """The resolved gateway URL and token for one client.

    >>> ClientConfig.resolve(base_url="http://gw:8765/", token="t")
    ClientConfig(base_url='http://gw:8765')
    """

    base_url: str
    token: str | None = field(repr=False)

    @classmethod
    def resolve(cls, *, base_url: str | None = None, token: str | None = None) -> ClientConfig:
        """Keyword arguments, then environment, then runtime file, then the default URL."""
        url = base_url or _environ("SANDCELL_URL")
        token = token or _environ("SANDCELL_TOKEN")
        if url is None or token is None:
            running = find_gateway()
            if running is not None and (url is None or _same_url(url, running.url)):
                url = url or running.url
                token = token or running.token
        return cls(base_url=(url or DEFAULT_BASE_URL).rstrip("/"), token=token)


def runtime_dir() -> Path:
    """``$SANDCELL_RUNTIME_DIR``, else ``~/.local/share/sandcell/runtime``."""
    configured = _environ("SANDCELL_RUNTIME_DIR")
    if configured is not None:
        return Path(configured)
    return Path.home() / ".local" / "share" / "sandcell" / "runtime"


def find_gateway(directory: Path | None = None) -> RuntimeFile | None:
    """The most recently started gateway on this machine that is still running."""
    directory = runtime_dir() if directory is None else directory
    found = (RuntimeFile.load(path) for path in sorted(directory.glob("gateway-*.json")))
    alive = [runtime for runtime in found if runtime is not None and pid_alive(runtime.pid)]
    return max(alive, key=lambda runtime: runtime.started_at, default=None)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one we may not signal still exists).

    >>> pid_alive(os.getpid())
    True
    """
    if pid <= 0:
        return False  # 0 and negatives address process groups, not a gateway
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _environ(name: str) -> str | None:
    return os.environ.get(name) or None


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def _timestamp(value: Any) -> float | None:
    """Seconds since the epoch from a number or an ISO 8601 string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None
