"""Idle plugin workers kept for their next call, keyed by who may be served next.

A worker that completed a call under ``per_tenant`` isolation waits under its tenant's key
and is only ever handed to that tenant again; under ``shared`` every caller's key is the same
(``SHARED``); ``per_call`` workers never come here. The newest idle worker goes out first:
its process is the warmest, and the oldest ones reach ``max_age`` and leave.

Example::

    >>> idle: IdleWorkers[str] = IdleWorkers()
    >>> idle.put("tenant:alice", "w1", now=0.0); idle.put("tenant:alice", "w2", now=1.0)
    >>> idle.take("tenant:bob") is None, idle.take("tenant:alice")
    (True, 'w2')
    >>> idle.remove(lambda worker: worker == "w1"), len(idle)
    (['w1'], 0)
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Generic, TypeVar

from ..tenants import Tenant

T = TypeVar("T")
SHARED = "shared"


def reuse_key(isolation: str, tenant: Tenant | None) -> str | None:
    """The key a worker's next calls must share, or ``None`` when it serves one call only.

    >>> reuse_key("per_call", None), reuse_key("shared", None), reuse_key("per_tenant", None)
    (None, 'shared', 'tenant:default')
    """
    if isolation == "per_call":
        return None
    if isolation == "shared":
        return SHARED
    return "tenant:" + (tenant.name if tenant is not None else "default")


class IdleWorkers(Generic[T]):
    """Workers between calls, newest last in each key's stack; O(1) take and put."""

    def __init__(self) -> None:
        self._by_key: dict[str, collections.deque[tuple[float, T]]] = {}

    def __len__(self) -> int:
        return sum(len(stack) for stack in self._by_key.values())

    def put(self, key: str, worker: T, now: float) -> None:
        self._by_key.setdefault(key, collections.deque()).append((now, worker))

    def take(self, key: str) -> T | None:
        """The most recently used idle worker of ``key``, if any."""
        stack = self._by_key.get(key)
        if not stack:
            return None
        _, worker = stack.pop()
        if not stack:
            del self._by_key[key]
        return worker

    def take_oldest(self) -> T | None:
        """The worker idle for longest, of any key: the one to evict for another key."""
        oldest = min(self._by_key.items(), key=lambda item: item[1][0][0], default=None)
        if oldest is None:
            return None
        key, stack = oldest
        _, worker = stack.popleft()
        if not stack:
            del self._by_key[key]
        return worker

    def remove(self, match: Callable[[T], bool]) -> list[T]:
        """Take out every idle worker ``match`` selects (e.g. one whose container died)."""
        removed: list[T] = []
        for key in list(self._by_key):
            kept = collections.deque(item for item in self._by_key[key] if not match(item[1]))
            removed += [worker for _, worker in self._by_key[key] if match(worker)]
            if kept:
                self._by_key[key] = kept
            else:
                del self._by_key[key]
        return removed

    def all(self) -> list[T]:
        return [worker for stack in self._by_key.values() for _, worker in stack]
