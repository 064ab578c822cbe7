"""Adaptive pool sizing: the policy on a fake clock, then wired into a WarmPool (no Docker)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import pytest

from sandcell_gateway.config import ConfigError, TemplateConfig, load_config
from sandcell_gateway.pool import WarmPool
from sandcell_gateway.pool_sizing import MemoryBudget, ReadyTarget, parse_size
from sandcell_gateway.wire import new_sandbox_id

MIB = 1024 * 1024


def claims(target: ReadyTarget, rate: float, start: float, seconds: float) -> float:
    """Claims at a steady ``rate`` from ``start`` for ``seconds``; returns the end time."""
    count = int(rate * seconds)
    for i in range(count):
        target.record_claim(start + i / rate)
    return start + seconds


def test_no_claims_keeps_the_floor() -> None:
    assert ReadyTarget(floor=2, ceiling=16).ready(now=1000.0) == 2


def test_target_follows_rate_times_production_time_with_headroom() -> None:
    slow = ReadyTarget(floor=1, ceiling=64, produce=2.0, headroom=2.0)
    fast = ReadyTarget(floor=1, ceiling=64, produce=0.5, headroom=2.0)
    for target in (slow, fast):
        claims(target, rate=4.0, start=0.0, seconds=60.0)
    assert slow.rate(60.0) == pytest.approx(4.0, rel=0.1)
    assert slow.ready(60.0) == pytest.approx(16, abs=2)  # 4/s x 2 s x 2
    assert fast.ready(60.0) == pytest.approx(4, abs=1)   # 4/s x 0.5 s x 2


def test_target_is_capped_by_the_ceiling() -> None:
    target = ReadyTarget(floor=2, ceiling=5, produce=2.0)
    claims(target, rate=20.0, start=0.0, seconds=30.0)
    assert target.ready(30.0) == 5


def test_target_decays_back_to_the_floor_when_claims_stop() -> None:
    target = ReadyTarget(floor=2, ceiling=32, produce=1.0, half_life=10.0)
    end = claims(target, rate=5.0, start=0.0, seconds=60.0)
    high = target.ready(end)
    assert high >= 8
    assert 2 < target.ready(end + 10.0) < high  # one half-life later: about half
    assert target.ready(end + 120.0) == 2


def test_measured_starts_move_the_production_time() -> None:
    target = ReadyTarget(floor=0, ceiling=64, produce=1.0)
    for _ in range(20):
        target.record_start(3.0)
    assert target.produce == pytest.approx(3.0, abs=0.05)


def test_memory_budget_counts_every_pool() -> None:
    budget = MemoryBudget(parse_size("1g"))
    budget.register(lambda: 4, 128 * MIB)   # 512 MiB
    budget.register(lambda: 2, 64 * MIB)    # 128 MiB
    assert budget.used() == 640 * MIB
    assert budget.room(64 * MIB) == 6 and budget.room(512 * MIB) == 0


def test_sizes_and_config_keys() -> None:
    assert parse_size("512MiB") == 512 * MIB and parse_size("1.5g") == 1536 * MIB
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")
    with pytest.raises(ConfigError, match="pool_memory_budget"):
        load_config(pool_memory_budget="huge")
    with pytest.raises(ConfigError, match="ready_memory"):
        TemplateConfig("python", ready_memory="12 parsecs")


# --- wired into a pool ---------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class FakeSandbox:
    id: str


class Launcher:
    def __init__(self) -> None:
        self.launched: list[str] = []
        self.destroyed: list[str] = []

    async def launch(self, template: TemplateConfig, sandbox_id: str) -> FakeSandbox:
        self.launched.append(sandbox_id)
        return FakeSandbox(sandbox_id)

    async def destroy(self, sandbox: FakeSandbox) -> None:
        self.destroyed.append(sandbox.id)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)  # poll the condition


class HeldProduction(ReadyTarget):
    """Fake launches take no time on the fake clock: the production time stays at 1 s."""

    def record_start(self, seconds: float) -> None:
        pass


def adaptive_pool(launcher: Launcher, clock: Clock, budget: MemoryBudget | None = None,
                  max_total: int = 40) -> WarmPool[FakeSandbox]:
    template = TemplateConfig("python", min_ready=2, max_total=max_total)
    sizing = HeldProduction(floor=2, ceiling=max_total, produce=1.0)
    pool = WarmPool[FakeSandbox](template, launch=launcher.launch, destroy=launcher.destroy,
                                 new_id=new_sandbox_id, sizing=sizing, budget=budget,
                                 ready_memory=64 * MIB, clock=clock)
    pool.start()
    return pool


async def burst(pool: WarmPool[FakeSandbox], clock: Clock, rate: float, seconds: float) -> None:
    """Sessions at ``rate`` per second (fake time), each claimed and ended at once."""
    for _ in range(int(rate * seconds)):
        await pool.retire(await pool.claim(timeout=5))
        clock.now += 1 / rate


@pytest.mark.anyio
async def test_pool_grows_with_the_claim_rate_and_shrinks_when_claims_stop() -> None:
    launcher, clock = Launcher(), Clock()
    pool = adaptive_pool(launcher, clock)
    await until(lambda: pool.stats()["ready"] == 2)
    await burst(pool, clock, rate=5.0, seconds=30.0)  # 5/s x 1 s x headroom 2 = ~10
    await until(lambda: pool.stats()["ready"] >= 8)
    assert pool.stats()["target"] == pool.stats()["ready"]
    clock.now += 300.0  # claims stopped long ago: back to the floor, extras destroyed
    await until(lambda: pool.stats()["ready"] == 2)
    assert len(launcher.destroyed) >= 6
    await pool.close()


@pytest.mark.anyio
async def test_pool_growth_stops_at_the_memory_budget() -> None:
    launcher, clock = Launcher(), Clock()
    budget = MemoryBudget(5 * 64 * MIB)  # five ready sandboxes' worth
    pool = adaptive_pool(launcher, clock, budget)
    await until(lambda: pool.stats()["ready"] == 2)
    await burst(pool, clock, rate=10.0, seconds=20.0)  # would want ~20 ready
    await until(lambda: pool.stats()["ready"] == 5)
    for _ in range(50):
        await asyncio.sleep(0)  # give the refill every chance to overshoot
    assert pool.stats()["ready"] == 5 and pool.stats()["target"] == 5
    await pool.close()


@pytest.mark.anyio
async def test_a_fixed_pool_keeps_min_ready_whatever_the_rate() -> None:
    launcher, clock = Launcher(), Clock()
    template = TemplateConfig("python", min_ready=2, max_total=40, adaptive=False)
    pool = WarmPool[FakeSandbox](template, launch=launcher.launch, destroy=launcher.destroy,
                                 new_id=new_sandbox_id, clock=clock)
    pool.start()
    await until(lambda: pool.stats()["ready"] == 2)
    await burst(pool, clock, rate=10.0, seconds=5.0)
    await until(lambda: pool.stats()["ready"] == 2)
    for _ in range(50):
        await asyncio.sleep(0)
    assert pool.stats()["ready"] == 2 and pool.stats()["target"] == 2
    await pool.close()
