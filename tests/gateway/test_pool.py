"""WarmPool policy, with the container launcher faked (the boundary): no Docker here."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import pytest

from sandcell_gateway.config import TemplateConfig
from sandcell_gateway.errors import BackendUnavailable, ServiceUnavailable
from sandcell_gateway.pool import WarmPool
from sandcell_gateway.wire import new_sandbox_id

pytestmark = pytest.mark.anyio


@dataclasses.dataclass(eq=False)
class FakeSandbox:
    id: str


class FakeLauncher:
    """Launches instantly unless ``gate`` is closed; records what was destroyed."""

    def __init__(self) -> None:
        self.launched: list[str] = []
        self.destroyed: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def launch(self, template: TemplateConfig, sandbox_id: str) -> FakeSandbox:
        await self.gate.wait()
        self.launched.append(sandbox_id)
        return FakeSandbox(sandbox_id)

    async def destroy(self, sandbox: FakeSandbox) -> None:
        self.destroyed.append(sandbox.id)


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)  # poll the condition


def make_pool(launcher: FakeLauncher, min_ready: int = 2, max_total: int = 4,
              refill_delay: float = 0.0) -> WarmPool[FakeSandbox]:
    template = TemplateConfig("python", min_ready=min_ready, max_total=max_total)
    pool = WarmPool[FakeSandbox](template, launch=launcher.launch, destroy=launcher.destroy,
                                 new_id=new_sandbox_id, refill_delay=refill_delay)
    pool.start()
    return pool


async def test_fills_to_min_ready_and_refills_after_claim() -> None:
    launcher = FakeLauncher()
    pool = make_pool(launcher)
    await until(lambda: pool.stats()["ready"] == 2)
    sandbox = await pool.claim(timeout=1)
    assert sandbox.id in launcher.launched
    await until(lambda: pool.stats()["ready"] == 2)
    assert pool.stats()["claimed"] == 1
    await pool.close()


async def test_claim_does_not_launch_when_ready() -> None:
    launcher = FakeLauncher()
    pool = make_pool(launcher)
    await until(lambda: pool.stats()["ready"] == 2)
    launcher.gate.clear()  # any launch now would block the claim
    await asyncio.wait_for(pool.claim(timeout=5), 0.5)
    await pool.close()


async def test_concurrent_claims_never_share_a_sandbox() -> None:
    launcher = FakeLauncher()
    pool = make_pool(launcher, min_ready=2, max_total=8)
    claimed = await asyncio.gather(*(pool.claim(timeout=5) for _ in range(8)))
    assert len({s.id for s in claimed}) == 8
    await pool.close()


async def test_never_exceeds_max_total_and_times_out_with_503() -> None:
    launcher = FakeLauncher()
    pool = make_pool(launcher, min_ready=1, max_total=2)
    await pool.claim(timeout=1)
    await pool.claim(timeout=1)
    with pytest.raises(ServiceUnavailable) as info:
        await pool.claim(timeout=0.2)
    assert info.value.status == 503 and "max_total 2" in info.value.message
    assert len(launcher.launched) == 2
    await pool.close()


async def test_release_destroys_and_makes_room() -> None:
    launcher = FakeLauncher()
    pool = make_pool(launcher, min_ready=1, max_total=1)
    first = await pool.claim(timeout=1)
    waiting = asyncio.ensure_future(pool.claim(timeout=5))
    await pool.retire(first)
    second = await waiting
    assert first.id in launcher.destroyed and second.id != first.id
    await pool.close()


async def test_drop_ready_replaces_a_dead_ready_sandbox() -> None:
    launcher = FakeLauncher()
    pool = make_pool(launcher, min_ready=1, max_total=2)
    await until(lambda: pool.stats()["ready"] == 1)
    dead = launcher.launched[0]
    pool.drop_ready(dead)
    await until(lambda: len(launcher.launched) == 2 and pool.stats()["ready"] == 1)
    assert dead in launcher.destroyed
    await pool.close()


async def test_close_destroys_ready_sandboxes() -> None:
    launcher = FakeLauncher()
    pool = make_pool(launcher)
    await until(lambda: pool.stats()["ready"] == 2)
    await pool.close()
    assert sorted(launcher.destroyed) == sorted(launcher.launched)


class TimedLauncher(FakeLauncher):
    """Also records the event loop's clock at each launch."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    async def launch(self, template: TemplateConfig, sandbox_id: str) -> FakeSandbox:
        self.times.append(asyncio.get_running_loop().time())
        return await super().launch(template, sandbox_id)


async def test_refill_waits_refill_delay_while_the_pool_still_has_a_sandbox() -> None:
    launcher = TimedLauncher()
    pool = make_pool(launcher, refill_delay=0.3)
    await until(lambda: pool.stats()["ready"] == 2)  # an empty pool fills at once
    claimed_at = asyncio.get_running_loop().time()
    await pool.claim(timeout=1)
    await until(lambda: pool.stats()["ready"] == 2)  # the replacement came ...
    assert len(launcher.launched) == 3
    # ... no sooner than refill_delay after the claim. A lower bound: load only makes it
    # later, so this cannot flake on a busy machine (asyncio.timeout fires at or after it).
    assert launcher.times[2] - claimed_at >= 0.3, launcher.times


async def test_refill_skips_the_delay_when_the_pool_runs_dry() -> None:
    launcher = FakeLauncher()
    pool = make_pool(launcher, min_ready=1, refill_delay=60)
    await until(lambda: pool.stats()["ready"] == 1)
    await pool.claim(timeout=1)
    second = await pool.claim(timeout=5)  # waits: must not sit out the 60 s delay
    assert second.id == launcher.launched[-1]


class FailingLauncher(FakeLauncher):
    """Fails (as an unreachable Docker does) until ``fixed`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0
        self.fixed = False

    async def launch(self, template: TemplateConfig, sandbox_id: str) -> FakeSandbox:
        self.attempts += 1
        if not self.fixed:
            raise BackendUnavailable("Docker is unreachable")
        return await super().launch(template, sandbox_id)


async def test_failed_starts_back_off_and_retry_now_ends_the_backoff() -> None:
    launcher = FailingLauncher()
    pool = make_pool(launcher, min_ready=1)
    await until(lambda: pool.stats()["failed_starts"] == 2)  # the 1 s backoff, then a retry
    assert launcher.attempts == 2  # now in a 2 s backoff: no attempt in between
    assert "unreachable" in str(pool.stats()["last_error"])
    launcher.fixed = True
    pool.retry_now()
    await until(lambda: pool.stats()["ready"] == 1, timeout=1.0)  # not after the 2 s backoff
    assert pool.stats()["failed_starts"] == 0 and pool.stats()["last_error"] is None
    await pool.close()


async def test_adopted_sandboxes_count_against_max_total() -> None:
    launcher = FakeLauncher()
    template = TemplateConfig("python", min_ready=2, max_total=3)
    pool = WarmPool[FakeSandbox](template, launch=launcher.launch, destroy=launcher.destroy,
                                 new_id=new_sandbox_id)
    for name in ("a", "b"):
        pool.adopt(FakeSandbox(name))
    pool.start()
    await until(lambda: pool.stats()["ready"] == 1)
    assert pool.stats()["claimed"] == 2 and len(launcher.launched) == 1  # 2 + 1 = max_total
    await pool.retire(FakeSandbox("a"))
    await until(lambda: pool.stats()["ready"] == 2)
    await pool.close()
