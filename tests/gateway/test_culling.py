"""Removal policy: time to live and idle culling, on a fake clock (no Docker, no HTTP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sandcell_gateway.config import ConfigError, TenantConfig, load_config
from sandcell_gateway.errors import NotFound
from sandcell_gateway.fake_runtime import FakeRuntime
from sandcell_gateway.provisioner import ContainerHandle
from sandcell_gateway.sandbox import Sandbox, end_of_life
from sandcell_gateway.service import SandboxService
from sandcell_gateway.tenants import Tenant

from .kernels import unanswered_kernel

T0 = 1_000_000.0


@pytest.mark.parametrize(("expires_at", "last_active", "now", "idle_timeout", "reason"), [
    (T0 + 100, T0, T0 + 10, 60, None),  # fresh
    (T0 + 100, T0, T0 + 60, 60, "culled: idle for 60s (idle_timeout is 60s)"),
    (T0 + 100, T0 + 50, T0 + 60, 60, None),  # recent activity resets the idle clock
    (T0 + 100, T0, T0 + 99, 0, None),  # 0 disables idle culling
    (T0 + 100, T0 + 99, T0 + 100, 60, "expired: its time to live ran out"),
])
def test_end_of_life(expires_at: float, last_active: float, now: float, idle_timeout: float,
                     reason: str | None) -> None:
    assert end_of_life(expires_at, last_active, now, idle_timeout) == reason


def test_negative_idle_timeout_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="idle_timeout"):
        load_config(idle_timeout=-1)
    assert load_config().idle_timeout == 1800


OWNER = Tenant.from_config(TenantConfig("default"))


def sandbox(sandbox_id: str, last_active: float) -> Sandbox:
    handle = ContainerHandle(f"c-{sandbox_id}", sandbox_id, "python", Path("/nonexistent"), {})
    return Sandbox(handle, unanswered_kernel(), created_at=T0, expires_at=T0 + 3600,
                   last_active=last_active)


@pytest.mark.anyio
async def test_service_culls_idle_sandboxes_and_says_why(tmp_path: Path) -> None:
    config = load_config(store_path=tmp_path / "h.sqlite3", idle_timeout=60)
    runtime = FakeRuntime()
    service = SandboxService(config, runtime)
    pool = service.pools["python"]  # never started: it launches nothing
    idle, busy = "sbx_" + "a" * 16, "sbx_" + "b" * 16
    service._sandboxes = {idle: sandbox(idle, T0), busy: sandbox(busy, T0)}
    for claimed in service._sandboxes.values():
        pool.adopt(claimed)  # claimed from the pool, as recovery counts them
    await service.store.open()
    try:
        service._sandboxes[busy].last_active = T0 + 30  # e.g. an execute 30 s in
        culled = service._sandboxes[idle]
        removed: dict[str, Any] = await service.remove_due(T0 + 61)
        await service._reaper.wait_idle()  # containers go in the background
        assert list(removed) == [idle] and runtime.removed == [f"c-{idle}"]
        assert pool.stats()["claimed"] == 1 and culled.kernel.closed  # retired and destroyed
        assert [s.id for s in service.list(OWNER)] == [busy]
        with pytest.raises(NotFound, match=r"removed it \(culled: idle for 61s"):
            service.get(idle, OWNER)
        assert await service.remove_due(T0 + 89) == {}  # busy was active 59 s ago
        assert list(await service.remove_due(T0 + 90)) == [busy]
    finally:
        await service.close()
