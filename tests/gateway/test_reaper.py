"""Destruction off the request path: the Reaper, and a DELETE that does not wait for Docker.

Docker is faked (the boundary): its removal blocks until the test lets it finish, so the tests
prove what happens *before* a container is gone, without timing anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from sandcell_gateway.config import TemplateConfig, TenantConfig, load_config
from sandcell_gateway.errors import BackendUnavailable, NotFound
from sandcell_gateway.fake_runtime import FakeRuntime
from sandcell_gateway.pool import WarmPool
from sandcell_gateway.provisioner import ContainerHandle, KernelProvisioner
from sandcell_gateway.reaper import Reaper
from sandcell_gateway.sandbox import Sandbox
from sandcell_gateway.wire import new_sandbox_id
from sandcell_gateway.service import SandboxService
from sandcell_gateway.store import HistoryStore
from sandcell_gateway.tenants import Tenant

from .kernels import unanswered_kernel

pytestmark = pytest.mark.anyio
OWNER = Tenant.from_config(TenantConfig("default"))


class SlowDocker(FakeRuntime):
    """Removes a container only once ``gate`` opens; fails while ``down``."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.attempts: list[str] = []
        self.down = False

    async def remove(self, container_id: str) -> None:
        self.attempts.append(container_id)
        if self.down:
            raise BackendUnavailable("Docker is unreachable")
        await self.gate.wait()
        await super().remove(container_id)


def kernels(docker: FakeRuntime) -> KernelProvisioner:
    return KernelProvisioner(load_config(), docker)


def handle(name: str) -> ContainerHandle:
    return ContainerHandle("c_" + name, "sbx_" + name, "python", Path("/nonexistent"), {})


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)  # poll the condition


async def test_remove_returns_before_docker_is_done_and_finishes_later() -> None:
    docker = SlowDocker()
    reaper = Reaper(kernels(docker))
    victim = handle("a")
    reaper.remove(victim)  # returns at once although Docker has not removed anything
    assert victim.removing and reaper.pending == 1
    await until(lambda: docker.attempts == ["c_a"])
    assert docker.removed == []
    docker.gate.set()
    await reaper.wait_idle()
    assert docker.removed == ["c_a"] and reaper.pending == 0 and reaper.removed == 1


async def test_at_most_concurrency_removals_talk_to_docker_at_once() -> None:
    docker = SlowDocker()
    reaper = Reaper(kernels(docker), concurrency=2)
    for name in "abcde":
        reaper.remove(handle(name))
    await until(lambda: len(docker.attempts) == 2)
    for _ in range(20):
        await asyncio.sleep(0)  # give a third removal every chance to start
    assert len(docker.attempts) == 2
    docker.gate.set()
    await reaper.wait_idle()
    assert sorted(docker.removed) == [f"c_{n}" for n in "abcde"]


async def test_removal_is_retried_while_docker_is_unreachable() -> None:
    docker = SlowDocker()
    docker.down = True
    reaper = Reaper(kernels(docker), retry_every=0.01)
    reaper.remove(handle("a"))
    await until(lambda: len(docker.attempts) >= 3)
    assert docker.removed == []
    docker.down = False
    docker.gate.set()
    await reaper.wait_idle()
    assert docker.removed == ["c_a"]


async def test_close_drops_the_queue_but_lets_removals_under_way_finish() -> None:
    docker = SlowDocker()
    reaper = Reaper(kernels(docker), concurrency=1)
    for name in "abc":
        reaper.remove(handle(name))
    await until(lambda: docker.attempts == ["c_a"])
    closing = asyncio.ensure_future(reaper.close(timeout=5))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not closing.done()  # c_a is still being removed
    docker.gate.set()
    await closing
    # b and c were never sent: the gateway's remove_all() sweeps them up, all at once
    assert docker.removed == ["c_a"] and docker.attempts == ["c_a"] and reaper.pending == 0


async def service_with_pool(tmp_path: Path, docker: SlowDocker
                            ) -> tuple[SandboxService, WarmPool[Sandbox]]:
    config = load_config(store_path=tmp_path / "h.sqlite3")
    service = SandboxService(config, docker, HistoryStore(config.store_path))
    count = 0

    async def launch(template: TemplateConfig, sandbox_id: str) -> Sandbox:
        nonlocal count
        count += 1
        return Sandbox(handle(f"{count:016x}"), unanswered_kernel())

    pool = WarmPool[Sandbox](config.template("python"), launch=launch, destroy=service._destroy,
                             new_id=new_sandbox_id)
    service.pools = {"python": pool}
    await service.store.open()
    pool.start()
    return service, pool


async def test_delete_answers_while_docker_still_removes_and_the_id_is_gone(
        tmp_path: Path) -> None:
    docker = SlowDocker()
    service, pool = await service_with_pool(tmp_path, docker)
    try:
        sandbox = await service.create(OWNER)
        await asyncio.wait_for(service.delete(sandbox.id, OWNER), 2)  # Docker never finished
        assert docker.removed == [] and sandbox.kernel.closed
        with pytest.raises(NotFound):
            service.get(sandbox.id, OWNER)
        # the pool got its slot back at once: a claim now needs no removal to finish
        await until(lambda: pool.stats()["claimed"] == 0)
        other = await asyncio.wait_for(service.create(OWNER), 2)
        assert other.id != sandbox.id
        docker.gate.set()
        await service._reaper.wait_idle()
        assert docker.removed == [sandbox.handle.container_id]
    finally:
        docker.gate.set()
        docker.reachable = True
        await service.close()  # what is left goes as at shutdown, kernel connections too


async def test_delete_while_docker_is_unreachable_keeps_the_sandbox(tmp_path: Path) -> None:
    docker = SlowDocker()
    service, _ = await service_with_pool(tmp_path, docker)
    try:
        sandbox = await service.create(OWNER)
        docker.reachable = False
        with pytest.raises(BackendUnavailable):
            await service.delete(sandbox.id, OWNER)
        assert service.get(sandbox.id, OWNER) is sandbox
        assert not sandbox.kernel.closed
    finally:
        docker.gate.set()
        docker.reachable = True
        await service.close()  # what is left goes as at shutdown, kernel connections too
