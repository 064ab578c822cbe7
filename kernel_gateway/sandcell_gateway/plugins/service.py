"""The plugin service: validate, claim a warm worker, stream PPP events, release the worker.

No HTTP in here. Which worker a call gets follows its manifest's ``isolation``
(docs/plugins.md): ``per_call`` takes a fresh worker from the plugin's warm pool and destroys
it afterwards, however the call ended. ``per_tenant`` (the default) and ``shared`` keep a
worker that *completed* its call idle for the next call of the same tenant (``per_tenant``)
or of anyone (``shared``); it must answer ``Health`` before it takes that call, and it is
recycled after ``max_invocations`` calls, past ``max_age``, and at once after any failure,
timeout or cancel. Calls at once each get their own worker (idle ones first, then the warm
pool, which starts more up to ``max_total``), so none waits behind another.

Example::

    plugins = PluginService(config, runtime)
    await plugins.start()
    invocation = await plugins.open("subtract_numbers", {"operand1": 10, "operand2": 5})
    async for event in invocation.events():
        print(event)      # {"seq": 0, "msg_type": "progress", "content": {...}}, ...
    await plugins.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import grpc

from sandcell_plugin._proto import plugin_pb2 as pb

from ..config import GatewayConfig, TemplateConfig
from ..containers import ContainerRuntime
from ..errors import GatewayError, ServiceUnavailable
from ..pool import WarmPool
from ..tenants import Tenant, TokenBucket
from .registry import PluginManifest, PluginRegistry
from .reuse import IdleWorkers, reuse_key
from ..wire import new_invocation_id, new_worker_id
from .workers import Worker, WorkerLauncher, healthy

log = logging.getLogger(__name__)

Event = dict[str, Any]
# How often idle workers past their plugin's max_age are removed (a busy plugin's are also
# checked at each claim); the longest an expired worker lingers idle.
SWEEP_INTERVAL = 5.0


class PluginFailed(GatewayError):
    """An invocation ended with a ``failed`` event (for callers that want one answer)."""

    status = 502
    code = "plugin_failed"

    def __init__(self, content: dict[str, Any]) -> None:
        super().__init__(content.get("message", "the plugin failed"))
        self.content = content
        self.status = 504 if content.get("code") == "timeout" else 502
        self.code = f"plugin_{content.get('code', 'failed')}".replace("plugin_plugin_", "plugin_")


class Invocation:
    """One call of a plugin on one claimed worker; ``events()`` runs it (once)."""

    def __init__(self, service: PluginService, manifest: PluginManifest, worker: Worker,
                 inputs: dict[str, Any], timeout: float) -> None:
        self.id = new_invocation_id()
        self.manifest = manifest
        self._service = service
        self._worker = worker
        self._inputs = inputs
        self._timeout = timeout
        self._seq = 0
        self._started = False
        self._completed_ok = False  # only a worker that completed its call may be reused
        self._released = False

    def _event(self, msg_type: str, content: dict[str, Any]) -> Event:
        event = {"seq": self._seq, "msg_type": msg_type, "content": content}
        self._seq += 1
        return event

    async def events(self) -> AsyncGenerator[Event, None]:
        """``started``, then progress/log events as the plugin emits them, then one
        ``completed`` or ``failed``."""
        self._started = True
        try:  # the worker is released however this ends, even closed at ``started``
            yield self._event("started", {"invocation_id": self.id, "plugin": self.manifest.name,
                                          "version": self.manifest.version,
                                          "worker_id": self._worker.id, "timeout": self._timeout,
                                          "reused": self._worker.invocations > 0})
            async with contextlib.aclosing(self._invoke()) as stream:
                async for event in stream:
                    if event["msg_type"] in ("completed", "failed"):
                        # before the caller sees the end: its next call may find this worker
                        self._release()
                    yield event
        finally:
            self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._service.release(self._worker, reusable=self._completed_ok)

    async def _invoke(self) -> AsyncGenerator[Event, None]:
        request = pb.InvokeRequest(invocation_id=self.id, input_json=json.dumps(self._inputs))
        self._worker.invocations += 1
        # the worker's own channel, opened at launch: no new connection per call
        call = self._worker.stub.Invoke(request, timeout=self._timeout)
        chunks: list[bytes] = []
        received, dropped = 0, 0
        # a worker's output and its progress are untrusted: [plugins] bounds them (config.py)
        limits = self._service.config.plugins
        events = TokenBucket(limits.max_events_per_second, limits.events_burst)
        try:
            async for message in call:
                kind = message.WhichOneof("event")
                if kind == "result_chunk":
                    received += len(message.result_chunk.data)
                    if received > limits.max_output_bytes:
                        # the chunks are let go, so a worker cannot fill the gateway
                        yield self._failed("output_too_large", f"{self.manifest.name}'s output "
                                           f"is over {limits.max_output_bytes} bytes "
                                           "([plugins] max_output_bytes)")
                        return
                    chunks.append(message.result_chunk.data)
                elif kind in ("progress", "log") and events.take():
                    dropped += 1
                elif kind == "completed":
                    event = self._completed(message.completed.output_json or b"".join(chunks).decode())
                    self._completed_ok = event["msg_type"] == "completed"
                    yield event
                    return
                else:
                    yield self._event(kind or "unknown", _fields(getattr(message, kind or "")))
                    if kind == "failed":
                        return
            yield await self._ended_early("the worker closed the stream without a result")
        except grpc.aio.AioRpcError as exc:
            yield await self._rpc_failed(exc)
        finally:
            call.cancel()
            if dropped:
                log.info("plugin %s: dropped %d progress/log events over %g a second",
                         self.manifest.name, dropped, limits.max_events_per_second)

    async def close(self) -> None:
        """Release the worker of an invocation whose events were never read."""
        if not self._started:
            self._started = True
            self._release()

    def _completed(self, output_json: str) -> Event:
        try:
            output = json.loads(output_json)
        except ValueError as exc:
            return self._failed("invalid_output", f"the plugin's output is not JSON: {exc}")
        errors = self.manifest.output_errors(output)
        if errors:
            listed = "; ".join(f"{e['field'] or '(output)'}: {e['message']}" for e in errors)
            return self._failed("invalid_output",
                                f"the output does not match {self.manifest.name}'s output schema: {listed}")
        return self._event("completed", {"output": output})

    def _failed(self, code: str, message: str, details: str = "") -> Event:
        return self._event("failed", {"code": code, "message": message, "details": details})

    async def _rpc_failed(self, exc: grpc.aio.AioRpcError) -> Event:
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return self._failed("timeout", f"{self.manifest.name} did not finish within "
                                           f"{self._timeout:g}s; its worker was killed")
        if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            limit = self._service.config.plugins.max_worker_message_bytes
            return self._failed("message_too_large", f"{self.manifest.name}'s worker sent a "
                                f"message over {limit} bytes ([plugins] "
                                "max_worker_message_bytes); it was removed")
        if exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
            return self._failed("protocol_error", f"the worker refused the call: {exc.details()}")
        return await self._ended_early(f"gRPC {exc.code().name}: {exc.details()}")

    async def _ended_early(self, why: str) -> Event:
        state = await self._service.launcher.exit_state(self._worker, wait=2.0)
        ended = f"the worker stopped ({state})" if state else why
        return self._failed("worker_crashed",
                            f"{self.manifest.name}'s worker crashed during the invocation: {ended}; "
                            "the worker was removed")


def _fields(message: Any) -> dict[str, Any]:
    return {field.name: getattr(message, field.name) for field in message.DESCRIPTOR.fields}


class PluginService:
    """The registry plus one warm pool of workers per plugin."""

    def __init__(self, config: GatewayConfig, runtime: ContainerRuntime,
                 registry: PluginRegistry | None = None) -> None:
        self.config = config
        self.registry = registry or PluginRegistry.discover(config.plugins)
        self._runtime = runtime
        self.launcher = WorkerLauncher(config, runtime)
        slots = asyncio.Semaphore(config.launch_concurrency)
        self.pools: dict[str, WarmPool[Worker]] = {}
        self._idle: dict[str, IdleWorkers[Worker]] = {}
        self._releasing: set[asyncio.Future[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self.missing_images: dict[str, str] = {}
        for manifest in self.registry.list():
            template = self.launcher.template(manifest)
            self.pools[manifest.name] = WarmPool[Worker](
                template, launch=self._launcher_for(manifest), destroy=self.launcher.destroy,
                new_id=new_worker_id, launch_slots=slots)
            self._idle[manifest.name] = IdleWorkers()

    def _launcher_for(self, manifest: PluginManifest
                      ) -> Callable[[TemplateConfig, str], Awaitable[Worker]]:
        async def launch(template: TemplateConfig, worker_id: str) -> Worker:
            return await self.launcher.launch(manifest, template, worker_id)

        return launch

    async def start(self) -> None:
        """Fill every plugin's pool whose image exists (the sandbox service already reaped
        old containers). A plugin without its image answers 503 ``image_missing`` instead of
        retrying a doomed launch every second."""
        self.launcher.reset()
        for name, pool in self.pools.items():
            if await self._runtime.image_present(pool.template.image):
                pool.start()
            else:
                self.missing_images[name] = pool.template.image
                log.warning("plugin %s: image %s is missing; build it with `sandcell images "
                            "build` and restart the gateway", name, pool.template.image)
        self._sweeper = asyncio.ensure_future(self._sweep_forever())

    def on_container_exit(self, worker_id: str, reason: str) -> None:
        """A container of this gateway died: if it was a ready worker, its pool drops it and
        starts another, so no invocation is handed a dead worker."""
        for pool in self.pools.values():
            pool.drop_ready(worker_id)
        for idle in self._idle.values():
            for worker in idle.remove(lambda w: w.id == worker_id):
                self._recycle(worker)

    def retry_pools(self) -> None:
        """End the pools' backoff (Docker answers again after an outage)."""
        for pool in self.pools.values():
            pool.retry_now()

    def list(self) -> list[dict[str, Any]]:
        return [self.describe(manifest.name) for manifest in self.registry.list()]

    def describe(self, name: str) -> dict[str, Any]:
        return self.registry.get(name).describe() | {"pool": self._pool_stats(name)}

    def _pool_stats(self, name: str) -> dict[str, Any]:
        """The warm pool's counts, with idle reused workers apart from those in a call."""
        stats = self.pools[name].stats()
        idle = len(self._idle[name])
        return {**stats, "claimed": stats["claimed"] - idle, "idle": idle}

    async def open(self, name: str, inputs: Any, timeout: float | None = None, *,
                   tenant: Tenant | None = None) -> Invocation:
        """Validate ``inputs`` (before any worker is touched), spend one of the ``tenant``'s
        executions (429 past its execute rate), then claim a warm worker."""
        manifest = self.registry.get(name)
        manifest.validate_input(inputs)
        if tenant is not None:
            tenant.admit_execute()
        if name in self.missing_images:
            raise ServiceUnavailable(f"plugin {name}: its worker image {self.missing_images[name]} "
                                     "is missing; build it with `sandcell images build` and "
                                     "restart the gateway", code="image_missing")
        worker = await self._claim(manifest, reuse_key(manifest.isolation, tenant))
        return Invocation(self, manifest, worker, inputs, self._timeout(manifest, timeout))

    async def _claim(self, manifest: PluginManifest, key: str | None) -> Worker:
        """An idle worker of ``key`` that passes its Health check, else a fresh one from the
        warm pool (waiting up to ``claim_timeout`` when ``max_total`` are busy)."""
        if key is not None and (worker := await self._take_idle(manifest, key)) is not None:
            return worker
        pool = self.pools[manifest.name]
        if pool.short_of_slots(extra=1):
            # idle workers of other tenants hold every slot: the oldest gives its slot up
            if (oldest := self._idle[manifest.name].take_oldest()) is not None:
                self._recycle(oldest)
        worker = await pool.claim(pool.template.claim_timeout or 30.0)
        worker.key = key
        return worker

    async def _take_idle(self, manifest: PluginManifest, key: str) -> Worker | None:
        """The newest idle worker of ``key`` young enough and healthy; the others met on the
        way are recycled (a failed Health check costs the caller a fresh worker, no error)."""
        while (worker := self._idle[manifest.name].take(key)) is not None:
            try:
                if worker.age < manifest.max_age and await healthy(worker):
                    return worker
            except BaseException:  # the caller was cancelled mid-check: the worker is ours
                self._recycle(worker)
                raise
            self._recycle(worker)
        return None

    def _timeout(self, manifest: PluginManifest, requested: float | None) -> float:
        limits = [self.config.plugins.invoke_timeout, manifest.timeout, requested]
        return min(limit for limit in limits if limit is not None)

    async def invoke(self, name: str, inputs: Any, timeout: float | None = None, *,
                     tenant: Tenant | None = None) -> dict[str, Any]:
        """Run to the end and return the output; raise :class:`PluginFailed` on failure."""
        invocation = await self.open(name, inputs, timeout, tenant=tenant)
        events = invocation.events()
        try:
            async for event in events:
                if event["msg_type"] == "completed":
                    return dict(event["content"]["output"])
                if event["msg_type"] == "failed":
                    raise PluginFailed(event["content"])
        finally:
            await events.aclose()
            await invocation.close()
        raise PluginFailed({"code": "no_result", "message": "the invocation ended without a result"})

    def release(self, worker: Worker, reusable: bool = False) -> None:
        """Keep a worker idle for its key's next call when its call completed and its
        manifest allows one more; otherwise recycle it."""
        if reusable and self._may_serve_again(worker):
            assert worker.key is not None  # a per_call worker is never reusable
            self._idle[worker.plugin].put(worker.key, worker, time.monotonic())
            return
        self._recycle(worker)

    def _may_serve_again(self, worker: Worker) -> bool:
        manifest = self.registry.get(worker.plugin)
        # a claim waiting for a slot (another tenant's, maybe) gets this one's, fresh
        return (worker.key is not None and worker.invocations < manifest.max_invocations
                and worker.age < manifest.max_age
                and not self.pools[worker.plugin].short_of_slots())

    def _recycle(self, worker: Worker) -> None:
        """Destroy a worker in the background (its pool starts a replacement): the caller's
        answer does not wait for ``docker rm``, and a cancelled caller cannot stop it."""
        task = asyncio.ensure_future(self.pools[worker.plugin].retire(worker))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _sweep_forever(self) -> None:
        """Remove idle workers past ``max_age`` also when no call comes to find them."""
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.sweep()

    def sweep(self) -> None:
        for name, idle in self._idle.items():
            max_age = self.registry.get(name).max_age
            for worker in idle.remove(lambda w: w.age >= max_age):
                self._recycle(worker)

    def stats(self) -> dict[str, Any]:
        """Each plugin's pool sizes; a plugin whose image is missing says so in ``last_error``."""
        stats = {name: self._pool_stats(name) for name in self.pools}
        for name, image in self.missing_images.items():
            stats[name]["last_error"] = f"image {image} is missing; no workers start"
        return stats

    async def close(self) -> None:
        """Stop refilling and remove the ready and used workers (the backend then reaps any
        other container of this gateway by label)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for idle in self._idle.values():
            for worker in idle.remove(lambda w: True):
                self._recycle(worker)
        await asyncio.gather(*self._releasing, return_exceptions=True)
        shutil.rmtree(self.launcher.root, ignore_errors=True)
        await asyncio.gather(*(pool.close() for pool in self.pools.values()), return_exceptions=True)
