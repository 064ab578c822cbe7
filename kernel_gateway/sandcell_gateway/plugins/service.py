"""The plugin service: validate, claim a warm worker, stream PPP events, release the worker.

No HTTP in here. By default every invocation gets a fresh worker from its plugin's warm pool
and the worker is destroyed when the invocation ends however it ends (completed, failed,
crashed, timed out, or abandoned by its caller). A manifest with
``"reuse": {"max_invocations": N}`` lets a worker go back to its pool after a *completed*
invocation until it has served N; any other ending still destroys it.

Example::

    plugins = PluginService(config, backend)
    await plugins.start()
    invocation = await plugins.open("subtract_numbers", {"operand1": 10, "operand2": 5})
    async for event in invocation.events():
        print(event)      # {"seq": 0, "msg_type": "progress", "content": {...}}, ...
    await plugins.close()
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import shutil
from collections.abc import AsyncGenerator
from typing import Any, cast

import grpc

from sandcell_plugin._proto import plugin_pb2 as pb

from ..backend import DockerBackend
from ..config import GatewayConfig, TemplateConfig
from ..errors import GatewayError, ServiceUnavailable
from ..pool import WarmPool
from ..tenants import Tenant
from .registry import PluginManifest, PluginRegistry
from .workers import Worker, WorkerLauncher

log = logging.getLogger(__name__)

Event = dict[str, Any]


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
        self.id = "inv_" + secrets.token_hex(8)
        self.manifest = manifest
        self._service = service
        self._worker = worker
        self._inputs = inputs
        self._timeout = timeout
        self._seq = 0
        self._started = False
        self._completed_ok = False  # only a worker that completed its call may be reused

    def _event(self, msg_type: str, content: dict[str, Any]) -> Event:
        event = {"seq": self._seq, "msg_type": msg_type, "content": content}
        self._seq += 1
        return event

    async def events(self) -> AsyncGenerator[Event, None]:
        """``started``, then progress/log events as the plugin emits them, then one
        ``completed`` or ``failed``."""
        self._started = True
        yield self._event("started", {"invocation_id": self.id, "plugin": self.manifest.name,
                                      "version": self.manifest.version,
                                      "worker_id": self._worker.id, "timeout": self._timeout})
        request = pb.InvokeRequest(invocation_id=self.id, input_json=json.dumps(self._inputs))
        self._worker.invocations += 1
        call = self._worker.stub.Invoke(request, timeout=self._timeout)
        chunks: list[bytes] = []
        try:
            async for message in call:
                kind = message.WhichOneof("event")
                if kind == "result_chunk":
                    chunks.append(message.result_chunk.data)
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
            self._service.release(self._worker, reusable=self._completed_ok)

    async def close(self) -> None:
        """Release the worker of an invocation whose events were never read."""
        if not self._started:
            self._started = True
            self._service.release(self._worker)

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

    def __init__(self, config: GatewayConfig, backend: DockerBackend,
                 registry: PluginRegistry | None = None,
                 launcher: WorkerLauncher | None = None) -> None:
        self.config = config
        self.registry = registry or PluginRegistry.discover(config.plugins)
        self.launcher = launcher or WorkerLauncher(config, backend)
        slots = asyncio.Semaphore(config.launch_concurrency)
        self.pools: dict[str, WarmPool] = {}
        self._releasing: set[asyncio.Future[None]] = set()
        self.missing_images: dict[str, str] = {}
        for manifest in self.registry.list():
            template = self.launcher.template(manifest)
            # WarmPool is generic in what it pools: here, Workers instead of Sandboxes.
            self.pools[manifest.name] = WarmPool(
                template, launch=cast(Any, self._launcher_for(manifest)),
                destroy=cast(Any, self.launcher.destroy), launch_slots=slots)

    def _launcher_for(self, manifest: PluginManifest) -> Any:
        async def launch(template: TemplateConfig, pool_id: str) -> Worker:
            return await self.launcher.launch(manifest, template, "wkr_" + pool_id[4:])

        return launch

    async def start(self) -> None:
        """Fill every plugin's pool whose image exists (the sandbox service already reaped
        old containers). A plugin without its image answers 503 ``image_missing`` instead of
        retrying a doomed launch every second."""
        self.launcher.reset()
        for name, pool in self.pools.items():
            if await self.launcher.image_exists(pool.template.image):
                pool.start()
            else:
                self.missing_images[name] = pool.template.image
                log.warning("plugin %s: image %s is missing; build it with `sandcell images "
                            "build` and restart the gateway", name, pool.template.image)

    def on_container_exit(self, worker_id: str, reason: str) -> None:
        """A container of this gateway died: if it was a ready worker, its pool drops it and
        starts another, so no invocation is handed a dead worker."""
        for pool in self.pools.values():
            pool.discard(worker_id)

    def retry_pools(self) -> None:
        """End the pools' backoff (Docker answers again after an outage)."""
        for pool in self.pools.values():
            pool.retry_now()

    def list(self) -> list[dict[str, Any]]:
        return [self.describe(manifest.name) for manifest in self.registry.list()]

    def describe(self, name: str) -> dict[str, Any]:
        manifest = self.registry.get(name)
        return manifest.describe() | {"pool": self.pools[name].stats()}

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
        pool = self.pools[name]
        worker = cast(Worker, await pool.claim(pool.template.claim_timeout or 30.0))
        return Invocation(self, manifest, worker, inputs, self._timeout(manifest, timeout))

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
        """Give a worker back to its pool when its manifest allows one more call and the
        last one completed; otherwise destroy it in the background: the caller's answer
        does not wait for ``docker rm``, and a cancelled caller cannot stop it."""
        pool = self.pools[worker.plugin]
        if reusable and worker.invocations < self.registry.get(worker.plugin).max_invocations:
            pool.give_back(cast(Any, worker))
            return
        task = asyncio.ensure_future(pool.release(cast(Any, worker)))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    def stats(self) -> dict[str, Any]:
        """Each plugin's pool sizes; a plugin whose image is missing says so in ``last_error``."""
        stats = {name: pool.stats() for name, pool in self.pools.items()}
        for name, image in self.missing_images.items():
            stats[name]["last_error"] = f"image {image} is missing; no workers start"
        return stats

    async def close(self) -> None:
        """Stop refilling and remove the ready and used workers (the backend then reaps any
        other container of this gateway by label)."""
        await asyncio.gather(*self._releasing, return_exceptions=True)
        shutil.rmtree(self.launcher.root, ignore_errors=True)
        await asyncio.gather(*(pool.close() for pool in self.pools.values()), return_exceptions=True)
