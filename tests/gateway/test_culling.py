"""Removal policy: time to live and idle culling, on a fake clock (no Docker, no HTTP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sandcell_gateway.config import ConfigError, TenantConfig, load_config
from sandcell_gateway.errors import NotFound
from sandcell_gateway.fake_runtime import FakeRuntime
from sandcell_gateway.sandbox import end_of_life
from sandcell_gateway.service import SandboxService
from sandcell_gateway.store import HistoryStore
from sandcell_gateway.tenants import Tenant

from .kernels import EchoSandboxes

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


@pytest.mark.anyio
async def test_service_culls_idle_sandboxes_and_says_why(tmp_path: Path) -> None:
    config = load_config(store_path=tmp_path / "h.sqlite3", idle_timeout=60)
    runtime = FakeRuntime()
    service = SandboxService(config, runtime, HistoryStore(config.store_path))
    sandboxes = EchoSandboxes()
    pool = sandboxes.pool(service)
    await service.store.open()
    try:
        idle, busy = await service.create(OWNER), await service.create(OWNER)
        idle.last_active, busy.last_active = T0, T0 + 30  # e.g. an execute 30 s in
        removed: dict[str, Any] = await service.remove_due(T0 + 61)
        await service._reaper.wait_idle()  # containers go in the background
        assert list(removed) == [idle.id] and runtime.removed == [idle.handle.container_id]
        assert pool.stats()["claimed"] == 1 and idle.kernel.closed  # retired and destroyed
        assert service.list(OWNER) == [busy]
        with pytest.raises(NotFound, match=r"removed it \(culled: idle for 61s"):
            service.get(idle.id, OWNER)
        assert await service.remove_due(T0 + 89) == {}  # busy was active 59 s ago
        assert list(await service.remove_due(T0 + 90)) == [busy.id]
    finally:
        await service.close()
        sandboxes.close()
