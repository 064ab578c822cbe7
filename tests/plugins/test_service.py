"""PluginService policy with in-process gRPC workers instead of containers: validation
before any worker, fresh worker per call, crash, timeout, cancellation, concurrency."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from sandcell_gateway.config import GatewayConfig, PluginsConfig, TenantConfig
from sandcell_gateway.errors import ServiceUnavailable
from sandcell_gateway.fake_runtime import FakeContainer, FakeRuntime
from sandcell_gateway.plugins.registry import InvalidInput, PluginManifest, PluginRegistry
from sandcell_gateway.plugins.service import PluginFailed, PluginService
from sandcell_gateway.plugins.workers import SOCKET_NAME
from sandcell_gateway.tenants import Tenant
from sandcell_plugin import Context, plugin
from sandcell_plugin.host import start_server

pytestmark = pytest.mark.anyio
TESTDATA = Path(__file__).parent / "testdata"


class InProcessRuntime(FakeRuntime):
    """Each "container" is a PPP server in this process on the socket the launcher mounted
    at ``/conn``; ``crash`` stops one mid-call, as a dying process would."""

    def __init__(self, manifest: PluginManifest) -> None:
        super().__init__(images=frozenset({manifest.image}))
        self.manifest = manifest
        self.servers: dict[str, grpc.aio.Server] = {}  # by worker id
        self.launched: list[str] = []
        self.destroyed: list[str] = []
        self.stopping: set[asyncio.Future[None]] = set()  # keep crash stops referenced
        # set by the test's reader when a progress event reached it: a crashing worker dies
        # only then, so its progress is seen first whatever the machine's speed
        self.progress_seen = asyncio.Event()

    async def started(self, container: FakeContainer) -> None:
        worker_id = container.spec.instance_id
        [conn] = [m.source for m in container.spec.mounts if m.target == "/conn"]
        runtime = self

        @plugin(name=self.manifest.name, version=self.manifest.version)
        async def behave(ctx: Context, mode: str, steps: int = 3, seconds: float = 60) -> dict[str, Any]:
            if mode == "crash":
                runtime.progress_seen.clear()
                ctx.progress(10, "crashing")
                await runtime.progress_seen.wait()
                # stop the server from outside this handler, as a dying process would: the
                # stop cancels this handler, which then never returns
                runtime.stop(container.id, "its process exited with code 3")
                stopping = asyncio.ensure_future(runtime.servers[worker_id].stop(None))
                runtime.stopping.add(stopping)
                await asyncio.Event().wait()
            if mode == "sleep":
                ctx.progress(0, "sleeping")  # as the real test plugin: the call has arrived
                await asyncio.sleep(seconds)
            if mode == "bad_output":
                return {"steps": "three"}
            if mode == "big":
                return {"steps": 0, "blob": "x" * (3 << 20)}
            if mode == "flood":
                for i in range(5000):
                    ctx.progress(i / 50, "flooding")
                return {"steps": 5000}
            if mode == "shout":
                ctx.progress(50, "x" * (5 << 20))
            for i in range(steps):
                ctx.progress(100 * (i + 1) / steps, f"step {i + 1}")
            return {"steps": steps}

        self.servers[worker_id] = await start_server(behave, f"unix:{conn / SOCKET_NAME}")
        self.launched.append(worker_id)

    async def remove(self, container_id: str) -> None:
        container = self.containers_by_id.get(container_id)
        await super().remove(container_id)
        if container is not None:
            self.destroyed.append(container.spec.instance_id)
            await self.servers.pop(container.spec.instance_id).stop(None)


@contextlib.asynccontextmanager
async def running_service(tmp_path: Path, limits: dict[str, Any] | None = None,
                          **changes: Any) -> AsyncIterator[PluginService]:
    """A service of one test plugin; ``limits``: [plugins] keys, ``changes``: its manifest's."""
    short = Path(tempfile.mkdtemp(prefix="sc-"))  # UNIX socket paths max out at ~107 bytes
    config = GatewayConfig(state_dir=short / "s", port=0,
                           plugins=PluginsConfig(dir=tmp_path, min_ready=1, max_total=4,
                                                 claim_timeout=10, **(limits or {})))
    manifest = dataclasses.replace(PluginManifest.load(TESTDATA / "sandcell_test_plugin"), **changes)
    runtime = InProcessRuntime(manifest)
    plugins = PluginService(config, runtime, PluginRegistry([manifest]))
    await plugins.start()
    yield plugins
    await plugins.close()
    shutil.rmtree(short)
    assert runtime.servers == {}, "a worker outlived the service"


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[PluginService]:
    async with running_service(tmp_path, isolation="per_call", max_invocations=1) as plugins:
        yield plugins


@pytest.fixture
async def reusing(tmp_path: Path) -> AsyncIterator[PluginService]:
    async with running_service(tmp_path, max_invocations=2) as plugins:  # per_tenant
        yield plugins


def runtime_of(service: PluginService) -> InProcessRuntime:
    runtime = service.launcher.runtime
    assert isinstance(runtime, InProcessRuntime)
    return runtime


async def wait_ready(service: PluginService, count: int = 1) -> None:
    pool = service.pools["sandcell_test_plugin"]
    async with asyncio.timeout(10):
        while pool.stats()["ready"] < count:
            await asyncio.sleep(0.01)  # poll the pool's own counters


async def events(service: PluginService, inputs: dict[str, Any], timeout: float | None = None
                 ) -> list[dict[str, Any]]:
    invocation = await service.open("sandcell_test_plugin", inputs, timeout)
    got = []
    async for event in invocation.events():
        got.append(event)
        if event["msg_type"] == "progress":
            runtime_of(service).progress_seen.set()
    return got


async def settle(service: PluginService) -> None:
    await asyncio.gather(*service._releasing)


async def test_invocation_events_and_a_fresh_worker_each_time(service: PluginService) -> None:
    await wait_ready(service)
    first = await events(service, {"mode": "steps", "steps": 2})
    second = await events(service, {"mode": "steps", "steps": 1})
    assert [e["msg_type"] for e in first] == ["started", "progress", "progress", "completed"]
    assert first[-1]["content"] == {"output": {"steps": 2}}
    assert first[0]["content"]["worker_id"] != second[0]["content"]["worker_id"]
    await settle(service)
    launcher = runtime_of(service)
    assert first[0]["content"]["worker_id"] in launcher.destroyed


async def test_invalid_input_is_rejected_before_any_worker(service: PluginService) -> None:
    await wait_ready(service)
    launcher = runtime_of(service)
    launched = list(launcher.launched)
    with pytest.raises(InvalidInput) as info:
        await service.open("sandcell_test_plugin", {"mode": "explode"})
    assert info.value.fields[0]["field"] == "mode"
    assert service.pools["sandcell_test_plugin"].stats()["claimed"] == 0
    assert launcher.launched == launched and launcher.destroyed == []


async def test_crash_mid_invoke_is_a_failed_event(service: PluginService) -> None:
    await wait_ready(service)
    got = await events(service, {"mode": "crash"})
    assert [e["msg_type"] for e in got] == ["started", "progress", "failed"]
    assert got[-1]["content"]["code"] == "worker_crashed"
    assert "exited with code 3" in got[-1]["content"]["message"]


async def test_timeout_fails_and_destroys_the_worker(service: PluginService) -> None:
    await wait_ready(service)
    got = await events(service, {"mode": "sleep", "seconds": 30}, timeout=0.2)
    assert got[-1]["content"]["code"] == "timeout"
    await settle(service)
    assert got[0]["content"]["worker_id"] in runtime_of(service).destroyed


async def test_output_is_validated(service: PluginService) -> None:
    await wait_ready(service)
    with pytest.raises(PluginFailed) as info:
        await service.invoke("sandcell_test_plugin", {"mode": "bad_output"})
    assert info.value.code == "plugin_invalid_output" and info.value.status == 502


async def test_a_cancelled_caller_still_releases_its_worker(service: PluginService) -> None:
    await wait_ready(service)
    invocation = await service.open("sandcell_test_plugin", {"mode": "sleep", "seconds": 30})
    stream = invocation.events()
    started = await stream.__anext__()
    progress = await stream.__anext__()  # the worker runs the call: it said "sleeping"
    assert progress["msg_type"] == "progress", progress
    task = asyncio.ensure_future(stream.__anext__())
    async with asyncio.timeout(10):
        while stream.ag_await is None:  # the caller now awaits the worker's next message
            await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await stream.aclose()
    await settle(service)
    assert started["content"]["worker_id"] in runtime_of(service).destroyed


async def test_an_unread_invocation_releases_on_close(service: PluginService) -> None:
    await wait_ready(service)
    invocation = await service.open("sandcell_test_plugin", {"mode": "steps"})
    await invocation.close()
    await settle(service)
    assert service.pools["sandcell_test_plugin"].stats()["claimed"] == 0


async def test_concurrent_invocations(service: PluginService) -> None:
    outputs = await asyncio.gather(*(service.invoke("sandcell_test_plugin",
                                                    {"mode": "steps", "steps": n})
                                     for n in range(1, 5)))
    assert [o["steps"] for o in outputs] == [1, 2, 3, 4]
    assert json.dumps(service.stats())  # serialisable for the API


async def test_a_plugin_whose_image_is_missing_is_a_clear_503(tmp_path: Path) -> None:
    config = GatewayConfig(state_dir=tmp_path / "s", port=0, plugins=PluginsConfig(dir=tmp_path))
    manifest = dataclasses.replace(PluginManifest.load(TESTDATA / "sandcell_test_plugin"),
                                   image="sandcell/missing:latest")
    launcher = InProcessRuntime(dataclasses.replace(manifest, image="sandcell/other:latest"))
    plugins = PluginService(config, launcher, PluginRegistry([manifest]))
    await plugins.start()
    try:
        with pytest.raises(ServiceUnavailable) as info:
            await plugins.open("sandcell_test_plugin", {"mode": "steps"})
        assert info.value.code == "image_missing" and "sandcell images build" in info.value.message
        assert "missing" in plugins.stats()["sandcell_test_plugin"]["last_error"]  # for /health
        assert launcher.launched == []
    finally:
        await plugins.close()


def worker_of(got: list[dict[str, Any]]) -> str:
    return str(got[0]["content"]["worker_id"])


async def test_a_reusing_plugin_s_worker_serves_max_invocations_then_goes(reusing: PluginService) -> None:
    await wait_ready(reusing)
    launcher = runtime_of(reusing)
    first = await events(reusing, {"mode": "steps", "steps": 1})
    second = await events(reusing, {"mode": "steps", "steps": 2})
    third = await events(reusing, {"mode": "steps", "steps": 1})
    assert first[-1]["msg_type"] == second[-1]["msg_type"] == "completed"
    assert worker_of(first) == worker_of(second) != worker_of(third)
    await settle(reusing)
    assert launcher.destroyed == [worker_of(first)]  # after its second call
    stats = reusing.stats()["sandcell_test_plugin"]
    assert (stats["claimed"], stats["idle"]) == (0, 1)  # the third waits for its next call


@pytest.mark.parametrize("inputs", [{"mode": "bad_output"}, {"mode": "crash"},
                                    {"mode": "sleep", "seconds": 30}])
async def test_a_reusing_plugin_s_worker_is_destroyed_after_a_failure(
        reusing: PluginService, inputs: dict[str, Any]) -> None:
    await wait_ready(reusing)
    ok = await events(reusing, {"mode": "steps", "steps": 1})
    failed = await events(reusing, inputs, timeout=0.3)  # the idle worker takes it
    assert failed[-1]["msg_type"] == "failed" and worker_of(failed) == worker_of(ok)
    await settle(reusing)
    assert worker_of(ok) in runtime_of(reusing).destroyed
    after = await events(reusing, {"mode": "steps", "steps": 1})
    assert worker_of(after) != worker_of(ok)


async def test_a_cancelled_call_recycles_a_reused_worker(reusing: PluginService) -> None:
    ok = await events(reusing, {"mode": "steps", "steps": 1})
    invocation = await reusing.open("sandcell_test_plugin", {"mode": "sleep", "seconds": 30})
    stream = invocation.events()
    assert worker_of([await stream.__anext__()]) == worker_of(ok)
    await stream.aclose()  # the caller went away mid-call
    await settle(reusing)
    assert worker_of(ok) in runtime_of(reusing).destroyed
    assert reusing.stats()["sandcell_test_plugin"]["idle"] == 0


def tenant(name: str) -> Tenant:
    return Tenant.from_config(TenantConfig(name, token_sha256=name[0] * 64 if name[0] in "abcdef" else "0" * 64))


async def call(service: PluginService, who: Tenant | None, steps: int = 1) -> str:
    invocation = await service.open("sandcell_test_plugin", {"mode": "steps", "steps": steps},
                                    tenant=who)
    got = [event async for event in invocation.events()]
    assert got[-1]["msg_type"] == "completed", got[-1]
    return worker_of(got)


async def test_per_tenant_workers_serve_only_their_tenant(tmp_path: Path) -> None:
    async with running_service(tmp_path) as plugins:  # per_tenant: the default
        alice, bob = tenant("alice"), tenant("bob")
        alices = [await call(plugins, alice) for _ in range(3)]
        bobs = [await call(plugins, bob) for _ in range(3)]
        assert len(set(alices)) == 1 and len(set(bobs)) == 1  # each kept its own worker
        assert not set(alices) & set(bobs)
        assert await call(plugins, alice) == alices[0] and await call(plugins, bob) == bobs[0]


async def test_a_shared_worker_serves_every_caller_in_turn(tmp_path: Path) -> None:
    async with running_service(tmp_path, isolation="shared") as plugins:
        served = [await call(plugins, who) for who in
                  (tenant("alice"), tenant("bob"), None, tenant("alice"), tenant("carol"))]
        assert len(set(served)) == 1
        launcher = runtime_of(plugins)
        assert launcher.destroyed == []


async def test_a_worker_failing_its_health_check_is_replaced_not_an_error(tmp_path: Path) -> None:
    async with running_service(tmp_path, isolation="shared") as plugins:
        launcher = runtime_of(plugins)
        first = await call(plugins, None)
        # the idle worker stops answering without its pool being told (a wedged process)
        await launcher.servers[first].stop(None)
        second = await call(plugins, None)
        assert second != first
        await settle(plugins)
        assert first in launcher.destroyed
        assert await call(plugins, None) == second


async def test_a_worker_past_max_age_is_recycled(tmp_path: Path) -> None:
    async with running_service(tmp_path, isolation="shared", max_age=0.3) as plugins:
        first = await call(plugins, None)
        worker = plugins._idle["sandcell_test_plugin"].all()[0]
        async with asyncio.timeout(10):
            while worker.age < 0.3:
                await asyncio.sleep(0.02)  # poll the worker's own clock
        assert await call(plugins, None) != first
        await settle(plugins)
        assert first in runtime_of(plugins).destroyed


async def test_the_sweep_removes_idle_workers_past_max_age(tmp_path: Path) -> None:
    async with running_service(tmp_path, isolation="shared", max_age=0.3) as plugins:
        first = await call(plugins, None)
        plugins.sweep()
        assert plugins.stats()["sandcell_test_plugin"]["idle"] == 1  # still young
        worker = plugins._idle["sandcell_test_plugin"].all()[0]
        async with asyncio.timeout(10):
            while worker.age < 0.3:
                await asyncio.sleep(0.02)
        plugins.sweep()
        await settle(plugins)
        assert first in runtime_of(plugins).destroyed
        assert plugins.stats()["sandcell_test_plugin"]["idle"] == 0


async def test_calls_at_once_get_their_own_workers_and_keep_them(tmp_path: Path) -> None:
    async with running_service(tmp_path, isolation="shared") as plugins:
        launcher = runtime_of(plugins)
        first = await asyncio.gather(*(call(plugins, None, steps=3) for _ in range(4)))
        assert len(set(first)) == 4  # none waited behind another's worker
        launched = len(launcher.launched)
        again = await asyncio.gather(*(call(plugins, None, steps=3) for _ in range(4)))
        assert set(again) == set(first)  # the same four, no new start
        assert len(launcher.launched) == launched


async def test_another_tenant_gets_a_slot_held_by_idle_workers(tmp_path: Path) -> None:
    async with running_service(tmp_path) as plugins:  # max_total 4
        alice = tenant("alice")
        alices = await asyncio.gather(*(call(plugins, alice, steps=3) for _ in range(4)))
        assert plugins.stats()["sandcell_test_plugin"]["idle"] == 4
        bobs = await call(plugins, tenant("bob"))  # an idle worker of alice's gave its slot
        assert bobs not in alices
        await settle(plugins)
        assert len(set(runtime_of(plugins).destroyed) & set(alices)) == 1


async def test_a_waiting_claim_gets_the_slot_of_a_worker_that_finishes(tmp_path: Path) -> None:
    async with running_service(tmp_path) as plugins:  # max_total 4
        alice = tenant("alice")
        busy = [await plugins.open("sandcell_test_plugin", {"mode": "sleep", "seconds": 0.3},
                                   tenant=alice) for _ in range(4)]

        async def run(invocation: Any) -> None:
            assert [e async for e in invocation.events()][-1]["msg_type"] == "completed"

        running = asyncio.gather(*(run(invocation) for invocation in busy))
        bobs = await call(plugins, tenant("bob"))  # waits: alice's four hold max_total
        await running
        assert bobs not in {invocation._worker.id for invocation in busy}


async def test_a_fresh_plugin_never_gives_a_worker_back(service: PluginService) -> None:
    await wait_ready(service)
    first = await events(service, {"mode": "steps", "steps": 1})
    await settle(service)
    assert worker_of(first) in runtime_of(service).destroyed


# --- a hostile worker (its code holds the worker's end of the channel) ---


async def test_a_progress_flood_is_capped_and_the_result_still_arrives(
        service: PluginService) -> None:
    await wait_ready(service)
    started = time.monotonic()
    got = await events(service, {"mode": "flood"})
    took = time.monotonic() - started
    progress = sum(1 for e in got if e["msg_type"] == "progress")
    limits = PluginsConfig()  # the defaults: 50 a second, bursts of 100
    assert limits.events_burst <= progress <= limits.events_burst \
        + limits.max_events_per_second * took + 1, (progress, took)
    assert progress < 5000
    assert got[-1]["msg_type"] == "completed" and got[-1]["content"]["output"] == {"steps": 5000}


@pytest.mark.parametrize("rate", [5.0, 100_000.0])
async def test_the_progress_rate_is_the_configured_one(tmp_path: Path, rate: float) -> None:
    async with running_service(tmp_path, {"max_events_per_second": rate},
                               isolation="per_call", max_invocations=1) as plugins:
        await wait_ready(plugins)
        started = time.monotonic()
        got = await events(plugins, {"mode": "flood"})
        took = time.monotonic() - started
    progress = sum(1 for e in got if e["msg_type"] == "progress")
    burst = plugins.config.plugins.events_burst
    assert burst == int(2 * rate)
    # 5000 sent: a low rate lets its burst and little more through, a high one all of them
    assert min(5000, burst) <= progress <= min(5000, burst + rate * took + 1), (progress, took)
    assert got[-1]["msg_type"] == "completed"


@pytest.mark.parametrize(("limit", "ends"), [(None, "completed"), (2 << 20, "failed")])
async def test_the_output_cap_is_the_configured_one(tmp_path: Path, limit: int | None,
                                                    ends: str) -> None:
    """"big" returns 3 MiB (three 1 MiB result chunks): under the 64 MiB default, over 2 MiB."""
    config = {"max_output_bytes": limit} if limit else {}
    async with running_service(tmp_path, config, isolation="per_call",
                               max_invocations=1) as plugins:
        await wait_ready(plugins)
        got = await events(plugins, {"mode": "big"})
        assert got[-1]["msg_type"] == ends, got[-1]
        if ends == "failed":
            assert got[-1]["content"]["code"] == "output_too_large"
            assert "over 2097152 bytes ([plugins] max_output_bytes)" in \
                got[-1]["content"]["message"]
            await settle(plugins)  # a worker that failed is never reused
            assert got[0]["content"]["worker_id"] in runtime_of(plugins).destroyed


@pytest.mark.parametrize(("limit", "ends"), [(None, "failed"), (8 << 20, "completed")])
async def test_the_channels_receive_limit_is_the_configured_one(
        tmp_path: Path, limit: int | None, ends: str) -> None:
    """"shout" sends one 5 MiB progress message: over the 4 MiB default, under 8 MiB."""
    config = {"max_worker_message_bytes": limit} if limit else {}
    async with running_service(tmp_path, config, isolation="per_call",
                               max_invocations=1) as plugins:
        await wait_ready(plugins)
        got = await events(plugins, {"mode": "shout"})
    assert got[-1]["msg_type"] == ends, got[-1]
    if ends == "failed":
        assert got[-1]["content"]["code"] == "message_too_large"
        assert f"over {4 << 20} bytes ([plugins] max_worker_message_bytes)" in \
            got[-1]["content"]["message"]
    else:
        assert len(got[1]["content"]["message"]) == 5 << 20  # the whole message came through
