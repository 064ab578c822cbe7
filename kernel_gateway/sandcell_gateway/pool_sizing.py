"""How many ready sandboxes a pool keeps: it follows the observed claim rate.

A claim is served at once only if a ready sandbox waits for it. A replacement takes
``produce`` seconds (container start, kernel imports, readiness proof), so claims arriving at
``rate`` per second need about ``rate x produce`` sandboxes in the making (Little's law) and as
many ready to cover the wait; ``headroom`` absorbs the bursts of random arrivals. The target
stays between ``floor`` (the template's ``min_ready``) and ``ceiling`` (its ``max_total``), and
decays back to the floor when claims stop (the rate estimate forgets with ``half_life``).

The memory budget bounds what ready sandboxes hold together, over every pool of a gateway.

Pure policy, no Docker, no clock of its own (``now`` is passed in)::

    >>> target = ReadyTarget(floor=2, ceiling=16, half_life=10.0, produce=1.0)
    >>> target.ready(now=0.0)
    2
    >>> for i in range(40):            # 2 claims/s for 20 s
    ...     target.record_claim(i / 2)
    >>> target.ready(now=20.0)         # ~2/s x 1 s x headroom 2, less the estimate's lag
    3
    >>> target.ready(now=120.0)        # claims stopped 100 s ago
    2
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Protocol

DEFAULT_PRODUCE = 1.5  # s to produce one ready sandbox, until one was measured
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str | int) -> int:
    """Bytes in a Docker-style size ("64m", "2g", "512MiB", 1024).

    >>> parse_size("64m"), parse_size("2g"), parse_size(4096)
    (67108864, 2147483648, 4096)
    """
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size (e.g. 512m, 2g)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


class ReadyPolicy(Protocol):
    """What a pool tells its sizing policy, and asks it."""

    def record_claim(self, now: float) -> None: ...

    def record_start(self, seconds: float) -> None: ...

    def ready(self, now: float) -> int: ...


class ReadyTarget:
    """The ready count a pool aims for; see the module docstring."""

    def __init__(self, floor: int, ceiling: int, *, headroom: float = 2.0,
                 half_life: float = 10.0, produce: float = DEFAULT_PRODUCE) -> None:
        if not 0 <= floor <= ceiling:
            raise ValueError(f"need 0 <= floor <= ceiling, got {floor}, {ceiling}")
        self.floor, self.ceiling = floor, ceiling
        self.headroom = headroom
        self._tau = half_life / math.log(2)  # time constant of the decaying rate estimate
        self.produce = produce  # s, smoothed over the last starts
        self._rate = 0.0  # claims/s at ``_at``
        self._at = 0.0

    def rate(self, now: float) -> float:
        """Claims per second, an exponentially decaying average."""
        return self._rate * math.exp(-max(0.0, now - self._at) / self._tau)

    def record_claim(self, now: float) -> None:
        self._rate = self.rate(now) + 1.0 / self._tau
        self._at = max(self._at, now)

    def record_start(self, seconds: float) -> None:
        """One sandbox took ``seconds`` from the decision to start it until it was ready."""
        self.produce += 0.3 * (seconds - self.produce)

    def ready(self, now: float) -> int:
        wanted = math.ceil(self.rate(now) * self.produce * self.headroom - 0.05)
        return max(self.floor, min(self.ceiling, wanted))


class FixedTarget:
    """Today's policy, for plugin pools and ``adaptive = false``: always ``floor`` ready."""

    def __init__(self, floor: int) -> None:
        self.floor = floor

    def record_claim(self, now: float) -> None:
        pass

    def record_start(self, seconds: float) -> None:
        pass

    def ready(self, now: float) -> int:
        return self.floor


class MemoryBudget:
    """Bytes that the ready sandboxes of every pool may hold together.

    Each pool registers how many of its sandboxes are warm (ready or starting) and what one
    holds; ``room()`` says how many more of a kind fit.

    >>> budget = MemoryBudget(parse_size("256m"))
    >>> budget.register(lambda: 3, parse_size("64m"))
    >>> budget.room(parse_size("64m"))
    1
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self._pools: list[tuple[Callable[[], int], int]] = []

    def register(self, warm: Callable[[], int], per_sandbox: int) -> None:
        self._pools.append((warm, per_sandbox))

    def used(self) -> int:
        return sum(count() * size for count, size in self._pools)

    def room(self, per_sandbox: int) -> int:
        return max(0, (self.total - self.used()) // max(1, per_sandbox))
