"""Warm pools: sandboxes (or plugin workers) started and proven ready before anyone asks."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypedDict, TypeVar

from .config import TemplateConfig
from .errors import GatewayError, ServiceUnavailable
from .pool_sizing import FixedTarget, MemoryBudget, ReadyPolicy

log = logging.getLogger(__name__)



class Poolable(Protocol):
    """What a pool needs of what it pools: an id (a sandbox's, a worker's)."""

    @property
    def id(self) -> str: ...


T = TypeVar("T", bound=Poolable)


class PoolStats(TypedDict):
    """A pool's counts, as /health and the plugin listing show them."""

    ready: int
    starting: int
    claimed: int
    min_ready: int
    max_total: int
    target: int
    last_error: str | None
    failed_starts: int
# Failed starts back off 1, 2, 4 s, then retry every MAX_BACKOFF s: an unreachable Docker is
# not hammered, and a pool refills within MAX_BACKOFF s (plus a start) once Docker is back.
MAX_BACKOFF = 5.0
DECAY_CHECK = 1.0  # s: how often a pool above its floor checks whether its target fell


class WarmPool(Generic[T]):
    """Keeps ``sizing.ready()`` items of one template ready (``min_ready`` unless an adaptive
    policy follows the claim rate, see pool_sizing.py), never more than ``max_total`` alive,
    and within the gateway's memory ``budget`` above the floor.

    ``launch(template, new_id())`` makes an item, ``destroy(item)`` ends it. ``claim()`` pops
    a ready item without touching the runtime and wakes the refill task; when the pool is
    empty it waits for the next ready one until a deadline. A claimed item counts against
    ``max_total`` until ``retire()`` destroys it. (A plugin worker that may serve another call
    waits for it outside the pool, in the plugin service, still counted claimed here.)

    Example::

        pool = WarmPool[Sandbox](template, launch=launch, destroy=destroy, new_id=new_sandbox_id)
        pool.start()
        sandbox = await pool.claim(timeout=30)
        await pool.retire(sandbox)
    """

    def __init__(self, template: TemplateConfig, *,
                 launch: Callable[[TemplateConfig, str], Awaitable[T]],
                 destroy: Callable[[T], Awaitable[None]], new_id: Callable[[], str],
                 launch_slots: asyncio.Semaphore | None = None, refill_delay: float = 0.0,
                 sizing: ReadyPolicy | None = None, budget: MemoryBudget | None = None,
                 ready_memory: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.template = template
        self._clock = clock
        self.refill_delay = refill_delay
        self._sizing = sizing or FixedTarget(template.min_ready)
        self._adaptive = sizing is not None  # only then may the ready set shrink on its own
        self._budget, self._ready_memory = budget, ready_memory
        if budget is not None:
            budget.register(lambda: len(self._ready) + self._starting, ready_memory)
        self._launch = launch
        self._destroy = destroy
        self._new_id = new_id
        self._slots = launch_slots or asyncio.Semaphore(2)
        self._ready: collections.deque[T] = collections.deque()
        self._waiters: collections.deque[asyncio.Future[T]] = collections.deque()
        self._starting = 0
        self._claimed = 0
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()  # a claim is waiting or the pool ran dry
        self._refill_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.last_error: str | None = None
        self._failures = 0  # consecutive failed starts; sets the backoff
        self._retry = asyncio.Event()  # set by retry_now(): cut every backoff short

    def stats(self) -> PoolStats:
        return {"ready": len(self._ready), "starting": self._starting, "claimed": self._claimed,
                "min_ready": self.template.min_ready, "max_total": self.template.max_total,
                "target": self._target(),
                "last_error": self.last_error, "failed_starts": self._failures}

    @property
    def has_ready(self) -> bool:
        return bool(self._ready)

    @property
    def total(self) -> int:
        return len(self._ready) + self._starting + self._claimed

    def short_of_slots(self, extra: int = 0) -> bool:
        """Whether the waiting claims (plus ``extra`` new ones) outnumber the items ready or
        starting for them while ``max_total`` leaves no room to start another: they wait until
        a claimed one is retired. (The plugin pools then recycle an idle worker.)"""
        wanted = len(self._waiters) + extra
        return (wanted > len(self._ready) + self._starting
                and self.total >= self.template.max_total)

    def start(self) -> None:
        self._refill_task = asyncio.ensure_future(self._refill_forever())
        self._poke()

    async def claim(self, timeout: float) -> T:
        """Hand out a ready item (O(1) when one is ready)."""
        self._sizing.record_claim(self._clock())
        if self._ready:
            item = self._ready.popleft()
            self._claimed += 1
        else:
            item = await self._wait_for_ready(timeout)  # ``_offer`` counted it claimed
        self._poke()
        return item

    async def _wait_for_ready(self, timeout: float) -> T:
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._poke()
        try:
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise ServiceUnavailable(
                f"no warm {self.template.name!r} sandbox became ready within {timeout:g}s "
                f"({self._describe_load()}); retry later or raise max_total") from None
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed over as we were cancelled
                self._claimed -= 1
                self._offer(waiter.result(), first=True)
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _describe_load(self) -> str:
        text = f"{self._claimed} claimed of max_total {self.template.max_total}"
        return f"{text}; last start failure: {self.last_error}" if self.last_error else text

    async def retire(self, item: T) -> None:
        """Destroy a claimed item; its slot lets the pool start a replacement."""
        self._claimed -= 1
        self._poke()
        await self._destroy(item)

    def adopt(self, item: T) -> None:
        """Count a claimed item a crashed run of the gateway left (re-adopted at start)."""
        del item  # only its slot matters: it counts against max_total until retired
        self._claimed += 1

    def drop_ready(self, item_id: str) -> None:
        """Forget a ready item whose container died before anyone claimed it."""
        for item in [i for i in self._ready if i.id == item_id]:
            self._ready.remove(item)
            self._spawn(self._destroy(item))
            self._poke()

    def _poke(self) -> None:
        """Wake the refill task; at once (no ``refill_delay``) if the pool is dry or a claim waits."""
        self._wake.set()
        if not self._ready or self._waiters:
            self._urgent.set()

    def _target(self) -> int:
        """Ready sandboxes to aim for: the policy's, above the floor only within the budget."""
        target = self._sizing.ready(self._clock())
        floor = self.template.min_ready
        if self._budget is not None and target > floor:
            warm = len(self._ready) + self._starting
            target = max(floor, min(target, warm + self._budget.room(self._ready_memory)))
        return target

    def _deficit(self, target: int) -> int:
        wanted = max(target, len(self._waiters)) - len(self._ready) - self._starting
        room = self.template.max_total - self.total
        return max(0, min(wanted, room))

    def _trim(self, target: int) -> None:
        """The claim rate fell: destroy the ready items past the target (newest first)."""
        while self._adaptive and len(self._ready) > target and not self._waiters:
            self._spawn(self._destroy(self._ready.pop()))

    async def _refill_forever(self) -> None:
        while True:
            above_floor = self._adaptive and len(self._ready) > self.template.min_ready
            with contextlib.suppress(TimeoutError):  # above the floor: notice a decay
                async with asyncio.timeout(DECAY_CHECK if above_floor else None):
                    await self._wake.wait()
            if self._ready and not self._waiters:
                # Starting a container takes both cores for a moment: let the claimant's first
                # cells run first. An empty pool or a waiting claim refills at once.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.refill_delay):
                        await self._urgent.wait()
            self._wake.clear()
            self._urgent.clear()
            target = self._target()
            self._trim(target)
            for _ in range(self._deficit(target)):
                self._starting += 1
                self._spawn(self._start_one())

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start_one(self) -> None:
        started = self._clock()  # the wait for a launch slot is part of producing one
        try:
            async with self._slots:
                item = await self._launch(self.template, self._new_id())
        except GatewayError as exc:
            self._starting -= 1
            await self._after_failure(str(exc))
            return
        except Exception as exc:  # a bug or an unexpected Docker reply: keep the pool alive
            log.exception("starting a %s sandbox failed", self.template.name)
            self._starting -= 1
            await self._after_failure(repr(exc))
            return
        self._starting -= 1
        self.last_error, self._failures = None, 0
        self._sizing.record_start(self._clock() - started)
        self._offer(item)

    async def _after_failure(self, message: str) -> None:
        self.last_error = message
        self._failures += 1
        log.warning("pool %s: %s", self.template.name, message)
        retry = self._retry
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(2.0 ** (self._failures - 1), MAX_BACKOFF)):
                await retry.wait()
        self._poke()

    def retry_now(self) -> None:
        """End the backoff: what failed the starts is fixed (Docker answers again)."""
        self._retry.set()
        self._retry = asyncio.Event()
        self._failures = 0

    def _offer(self, item: T, first: bool = False) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                # counted as claimed now, not when the waiter wakes: until then the refill
                # task would see a gap and start one sandbox too many
                self._claimed += 1
                waiter.set_result(item)
                return
        if first:
            self._ready.appendleft(item)
        else:
            self._ready.append(item)

    async def close(self) -> None:
        """Stop refilling and destroy the ready items (claimed ones belong to the caller)."""
        if self._refill_task is not None:
            self._refill_task.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        ready, self._ready = list(self._ready), collections.deque()
        await asyncio.gather(*(self._destroy(i) for i in ready), return_exceptions=True)
