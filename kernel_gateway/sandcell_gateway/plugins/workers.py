"""Plugin workers: hardened containers serving one plugin over PPP on a UNIX socket.

A worker's container gets the sandboxes' hardening (the runtime applies the template's
limits: non-root, read-only root, no network, no capabilities), the plugin's directory read-only at
``/plugin`` and a fresh per-worker directory at ``/conn`` where the plugin host creates
``ppp.sock``. The gateway reaches it through the host path of that socket: no ports.

Example::

    launcher = WorkerLauncher(config, runtime)
    worker = await launcher.launch(manifest, launcher.template(manifest), new_worker_id())
    async for event in worker.stub.Invoke(pb.InvokeRequest(input_json="{}")): ...
    await launcher.destroy(worker)
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path

import grpc

from sandcell_plugin._proto import plugin_pb2 as pb
from sandcell_plugin._proto import plugin_pb2_grpc as pb_grpc

from ..containers import ContainerRuntime, LaunchSpec, Mount, sandbox_uid
from ..config import GatewayConfig, TemplateConfig
from ..errors import GatewayError
from .registry import PluginManifest

log = logging.getLogger(__name__)

SOCKET_NAME = "ppp.sock"
# Reconnect quickly while a fresh worker's socket appears (gRPC's default backoff is 1 s+).
CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 20), ("grpc.min_reconnect_backoff_ms", 20),
                   ("grpc.max_reconnect_backoff_ms", 100), ("grpc.enable_http_proxy", 0)]
# A reused worker answers Health before its next call; one that cannot within this is
# recycled and the caller gets another worker (a warm process answers in about a millisecond).
HEALTH_TIMEOUT = 1.0


class WorkerStartFailed(GatewayError):
    status = 503
    code = "worker_start_failed"


@dataclasses.dataclass
class Worker:
    """A ready worker: its container, its socket directory and an open gRPC channel."""

    id: str
    plugin: str
    container_id: str
    conn_dir: Path
    channel: grpc.aio.Channel
    stub: pb_grpc.PluginWorkerStub
    runtime: str = ""
    invocations: int = 0  # calls served; a reused worker serves several
    started: float = dataclasses.field(default_factory=time.monotonic)
    # whose calls it may serve next (plugins/reuse.py); None: this call only
    key: str | None = None

    @property
    def age(self) -> float:
        return time.monotonic() - self.started


def channel_for(conn_dir: Path, max_message_bytes: int) -> grpc.aio.Channel:
    """The one place a worker's channel is made: opened once per worker at launch and reused
    for every call it serves (Health, Init, each Invoke), closed when it is destroyed.

    The worker runs the plugin's code, so what it sends is attacker-controlled: a message over
    ``max_message_bytes`` fails its call (``message_too_large``) before gRPC holds more of it.
    """
    options = [*CHANNEL_OPTIONS, ("grpc.max_receive_message_length", max_message_bytes)]
    return grpc.aio.insecure_channel(f"unix:{conn_dir / SOCKET_NAME}", options=options)


async def healthy(worker: Worker, timeout: float = HEALTH_TIMEOUT) -> bool:
    """Whether a worker between calls still answers ``Health`` with SERVING."""
    try:
        reply = await worker.stub.Health(pb.HealthRequest(), timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        log.info("plugin %s: worker %s failed its Health check (%s); recycling it",
                 worker.plugin, worker.id, exc.code().name)
        return False
    return bool(reply.status == pb.HealthResponse.Status.SERVING)


class WorkerLauncher:
    """Starts, proves ready, inspects and removes plugin worker containers."""

    def __init__(self, config: GatewayConfig, runtime: ContainerRuntime) -> None:
        self.config = config
        self.runtime = runtime
        self._uid = sandbox_uid()
        # beside the gateway's sandbox directories, which the backend removes at start/stop
        self.root = config.state_dir / f"{config.gateway_id}-plugins"

    def reset(self) -> None:
        """Remove socket directories a previous run left (their containers are reaped by label)."""
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, mode=0o700)

    def template(self, manifest: PluginManifest) -> TemplateConfig:
        """The pool settings and hardening for ``manifest``'s workers."""
        plugins = self.config.plugins
        return TemplateConfig(name=manifest.name, image=manifest.image,
                              min_ready=plugins.min_ready, max_total=plugins.max_total,
                              claim_timeout=plugins.claim_timeout, limits=plugins.limits)

    async def launch(self, manifest: PluginManifest, template: TemplateConfig,
                     worker_id: str) -> Worker:
        """Start a worker container and return it once ``Health`` says SERVING and ``Init``
        confirms the plugin; remove it if that does not happen in ``ready_timeout``."""
        conn_dir = self.root / worker_id
        conn_dir.mkdir(parents=True, mode=0o700)
        if os.getuid() == 0:
            os.chown(conn_dir, self._uid, self._uid)
        container_id = ""
        try:
            container_id = await self._start_container(manifest, template, worker_id, conn_dir)
            channel = channel_for(conn_dir, self.config.plugins.max_worker_message_bytes)
            worker = Worker(worker_id, manifest.name, container_id, conn_dir, channel,
                            pb_grpc.PluginWorkerStub(channel))
            await self._wait_ready(worker, manifest)
            return worker
        except BaseException:
            await self._remove(container_id, conn_dir)
            raise

    async def _start_container(self, manifest: PluginManifest, template: TemplateConfig,
                               worker_id: str, conn_dir: Path) -> str:
        # the worker id is the container's instance id, so exits name it; the sandbox
        # service ignores ids that are not its own
        return await self.runtime.launch(LaunchSpec(
            template.image, worker_id, manifest.name, template.limits,
            mounts=(Mount(conn_dir, "/conn"), Mount(manifest.directory, "/plugin", read_only=True)),
            environment={"SANDCELL_PPP_SOCKET": f"/conn/{SOCKET_NAME}"},
            labels={"plugin": manifest.name, "worker": worker_id}))

    async def _wait_ready(self, worker: Worker, manifest: PluginManifest) -> None:
        """Poll ``Health`` until SERVING (no sleeps: each call waits for the socket), failing
        fast when the container exits; then check ``Init``."""
        deadline = time.monotonic() + self.config.ready_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerStartFailed(f"plugin {manifest.name}: worker {worker.id} did not "
                                        f"answer Health within {self.config.ready_timeout:g}s")
            try:
                reply = await worker.stub.Health(pb.HealthRequest(), wait_for_ready=True,
                                                 timeout=min(remaining, 0.5))
                if reply.status == pb.HealthResponse.Status.SERVING:
                    break
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise WorkerStartFailed(f"plugin {manifest.name}: Health failed: {exc.details()}") from exc
            state = await self.exit_state(worker)
            if state is not None:
                raise WorkerStartFailed(f"plugin {manifest.name}: the worker exited before it "
                                        f"was ready ({state})")
        await self._init(worker, manifest)

    async def _init(self, worker: Worker, manifest: PluginManifest) -> None:
        try:
            info = await worker.stub.Init(pb.InitRequest(plugin_name=manifest.name,
                                                         plugin_version=manifest.version), timeout=10)
        except grpc.aio.AioRpcError as exc:
            raise WorkerStartFailed(f"plugin {manifest.name}: Init failed: {exc.details()}") from exc
        if info.plugin_version != manifest.version:
            raise WorkerStartFailed(f"plugin {manifest.name}: the worker serves version "
                                    f"{info.plugin_version}, the manifest says {manifest.version}")
        worker.runtime = info.runtime

    async def exit_state(self, worker: Worker, wait: float = 0.0) -> str | None:
        """None while the container runs (after waiting up to ``wait`` seconds for it to
        stop); else how it ended, e.g. ``exit code 3``, with the tail of its log."""
        why = await self.runtime.exit_reason(worker.container_id, wait)
        if why is None:
            return None
        tail = (await self.runtime.logs(worker.container_id, tail=5))[-500:]
        return f"{why}; last output: {tail}" if tail else why

    async def destroy(self, worker: Worker) -> None:
        """Close the channel, kill and remove the container and its socket directory."""
        await worker.channel.close(grace=None)
        await self._remove(worker.container_id, worker.conn_dir)

    async def _remove(self, container_id: str, conn_dir: Path) -> None:
        try:
            if container_id:
                await self.runtime.remove(container_id)
        finally:  # off the loop too: a call in flight elsewhere must not wait for the disk
            await asyncio.to_thread(shutil.rmtree, conn_dir, ignore_errors=True)
