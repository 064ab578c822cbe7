"""The Docker implementation of the container runtime seam (containers.py).

Every docker-py call blocks, so each one runs on a small thread pool of its own, never on the
event loop. Containers are found by label, never by name. The hardening of every container
(sandboxes' kernels and plugin workers alike) is decided here, from the template's limits:
non-root, read-only root, no capabilities, no new privileges, no network, size-capped tmpfs,
pids/memory/CPU limits, bounded logs.

Docker may go away for a while (daemon restart, socket proxy down): calls then raise
:class:`BackendUnavailable` (HTTP 503 ``backend_unavailable``), ``reachable`` turns False,
and the next call that gets through turns it True again. Nothing needs a gateway restart.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import _create_container_args
from docker.types import LogConfig

from .config import GatewayConfig, Limits
from .containers import (LABEL_PREFIX, SANDBOX_HOME, ContainerInfo, ExitListener, LaunchSpec,
                         sandbox_uid)
from .errors import BackendUnavailable, GatewayError
from .image_dirs import ImageDirs
from .image_dirs import cache_dir as image_dirs_cache

log = logging.getLogger(__name__)
T = TypeVar("T")


def run_options(limits: Limits, uid: int) -> dict[str, Any]:
    """docker-py ``containers.run`` keyword arguments for ``limits``' hardening."""
    return {
        "user": f"{uid}:{uid}",
        "read_only": limits.read_only,
        "tmpfs": {
            "/tmp": f"size={limits.tmp_size},mode=1777",
            SANDBOX_HOME: f"size={limits.workspace_size},uid={uid},gid={uid},mode=0700",
        },
        "network_mode": limits.network,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "pids_limit": limits.pids,
        "mem_limit": limits.memory,
        "memswap_limit": limits.memory,
        "nano_cpus": int(limits.cpus * 1e9),
        "log_config": LogConfig(type="json-file", config={"max-size": limits.log_max_size,
                                                          "max-file": "1"}),
    }


class DockerBackend:
    """This gateway's containers on one Docker daemon, tracked by its labels.

    Example::

        backend = DockerBackend(config)
        container_id = await backend.launch(LaunchSpec("sandcell/python:latest",
                                                       "sbx_0123456789abcdef", "python", Limits()))
        await backend.remove(container_id)
    """

    def __init__(self, config: GatewayConfig, client: docker.DockerClient | None = None) -> None:
        self._config = config
        self._client = client
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="docker")
        self._events_stop = threading.Event()
        self._exit_listeners: list[ExitListener] = []
        self._uid = sandbox_uid()
        self.address = (config.docker_host or os.environ.get("DOCKER_HOST")
                        or "unix:///var/run/docker.sock")
        self.reachable = True
        self.last_error = ""
        self._on_reachable: list[tuple[asyncio.AbstractEventLoop, Callable[[], None]]] = []
        self._bind_image_dirs: bool | None = None  # decided at the first create

    @property
    def labels(self) -> dict[str, str]:
        return {LABEL_PREFIX + "gateway": self._config.gateway_id}

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call a blocking docker-py function on the backend's thread pool."""
        loop = asyncio.get_running_loop()
        call = functools.partial(self._docker_call, fn, *args, **kwargs)
        return await loop.run_in_executor(self._executor, call)

    def _docker_call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            result = fn(*args, **kwargs)
        except docker.errors.ImageNotFound as exc:
            self._reached()
            raise GatewayError(f"sandbox image missing ({exc.explanation}); "
                               "build it with `sandcell images build`", code="image_missing") from exc
        except docker.errors.APIError as exc:  # the daemon answered, and said no
            self._reached()
            raise BackendUnavailable(f"Docker refused the request: {exc}") from exc
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise BackendUnavailable(self._unreachable(exc)) from exc
        self._reached()
        return result

    def _reached(self) -> None:
        if not self.reachable:
            log.info("Docker at %s is reachable again", self.address)
            for loop, callback in self._on_reachable:
                loop.call_soon_threadsafe(callback)
        self.reachable, self.last_error = True, ""

    def when_reachable_again(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` on this loop each time Docker answers after an outage (the
        events watcher notices within a second), e.g. to end the pools' backoff."""
        self._on_reachable.append((asyncio.get_running_loop(), callback))

    def _unreachable(self, exc: BaseException) -> str:
        message = (f"Docker is unreachable at {self.address} ({exc}); the gateway keeps "
                   "retrying on its own: retry the request later")
        if self.reachable:  # once per outage, not once per failed call
            log.warning("%s", message)
        self.reachable, self.last_error = False, message
        return message

    async def ping(self, timeout: float = 2.0) -> bool:
        try:
            async with asyncio.timeout(timeout):  # a hung daemon must not hang /health
                await self.run(lambda: self.client.ping())
        except (BackendUnavailable, TimeoutError):
            return False
        return True

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = self._docker_call(self._connect)
        return self._client

    def _connect(self) -> docker.DockerClient:
        if self._config.docker_host:
            return docker.DockerClient(base_url=self._config.docker_host, max_pool_size=16)
        return docker.from_env(max_pool_size=16)

    async def launch(self, spec: LaunchSpec) -> str:
        container_id = await self.create(spec)
        try:
            await self.start(container_id)
        except BaseException:
            await self.run(self._remove_now, container_id)
            raise
        return container_id

    async def create(self, spec: LaunchSpec) -> str:
        """Create (not start) ``spec``'s container, hardened, labelled; its id."""
        labels = {**self.labels, **{LABEL_PREFIX + k: v for k, v in spec.labels.items()},
                  LABEL_PREFIX + "sandbox": spec.instance_id,
                  LABEL_PREFIX + "template": spec.template}
        volumes = {str(m.source): {"bind": m.target, "mode": "ro" if m.read_only else "rw"}
                   for m in spec.mounts}
        runtime = {"runtime": spec.oci_runtime} if spec.oci_runtime else {}
        options = {"image": spec.image, "detach": True, "labels": labels, "volumes": volumes,
                   "environment": {"HOME": SANDBOX_HOME, **spec.environment},
                   **runtime, **run_options(spec.limits, self._uid)}
        return await self.run(self._create_now, options)

    def _create_now(self, options: dict[str, Any]) -> str:
        if self.image_dirs_wanted():
            for mount in self.image_dirs.mounts(options["image"]):
                options["volumes"][str(mount.source)] = {"bind": mount.target, "mode": "ro"}
        # docker-py's containers.create()/run() inspect the new container to return a model
        # object: one more daemon round trip per sandbox for an id the create already gave
        args = _create_container_args({**options, "version": self.client.api.api_version})
        return str(self.client.api.create_container(**args)["Id"])

    def image_dirs_wanted(self) -> bool:
        """Blocking (one ``docker info`` the first time)."""
        if self._bind_image_dirs is None:
            mode = self._config.bind_image_dirs
            driver = self.client.info().get("Driver") if mode == "auto" else None
            self._bind_image_dirs = mode == "always" or driver == "fuse-overlayfs"
        return self._bind_image_dirs

    @functools.cached_property
    def image_dirs(self) -> ImageDirs:
        return ImageDirs(image_dirs_cache(), self.client.api)

    async def start(self, container_id: str) -> None:
        await self.run(self.client.api.start, container_id)

    async def remove(self, container_id: str) -> None:
        await self.run(self._remove_now, container_id)

    def _remove_now(self, container_id: str) -> None:
        try:
            self.client.api.remove_container(container_id, force=True, v=True)
        except docker.errors.NotFound:
            pass

    async def exit_reason(self, container_id: str, wait: float = 0.0) -> str | None:
        if wait:
            try:
                await self.run(self.client.api.wait, container_id, timeout=wait)
            except GatewayError:
                pass  # still running after ``wait``, or gone: inspect says which
        return await self.run(self._exit_reason_now, container_id)

    def _exit_reason_now(self, container_id: str) -> str | None:
        """Blocking: on the thread pool, or on the events thread."""
        try:
            state = self.client.api.inspect_container(container_id)["State"]
        except docker.errors.DockerException:
            return "its container was removed"
        if state.get("Running"):
            return None
        if state.get("OOMKilled"):
            return "out of memory: it used more than its memory limit"
        code = state.get("ExitCode")
        why = f"its process exited with code {code}"
        if isinstance(code, int) and 128 < code < 160:
            why += f" (killed by signal {code - 128})"  # e.g. `docker kill`: 137, SIGKILL
        return why

    async def logs(self, container_id: str, tail: int) -> str:
        try:
            raw = await self.run(self.client.api.logs, container_id, tail=tail)
        except GatewayError:
            return ""
        return bytes(raw).decode(errors="replace").strip()

    async def image_present(self, image: str) -> bool:
        try:
            await self.run(self.client.images.get, image)
        except GatewayError as exc:
            if exc.code == "image_missing":
                return False
            raise
        return True

    async def containers(self) -> list[ContainerInfo]:
        filters = {"label": _label_filters(self.labels)}
        found = await self.run(lambda: self.client.api.containers(all=True, filters=filters))
        return [ContainerInfo(c["Id"], c.get("Labels", {}).get(LABEL_PREFIX + "sandbox", ""),
                              c.get("State") == "running") for c in found]

    async def remove_all(self) -> int:
        containers = await self.containers()
        await asyncio.gather(*(self.remove(c.id) for c in containers))
        return len(containers)

    def watch_exits(self, on_exit: ExitListener) -> None:
        """One events stream serves every listener (a plugin worker's id is its ``sandbox``
        label too)."""
        self._exit_listeners.append(on_exit)
        if len(self._exit_listeners) == 1:
            thread = threading.Thread(target=self._watch, args=(asyncio.get_running_loop(),),
                                      name="docker-events", daemon=True)
            thread.start()

    def _on_exit(self, instance_id: str, reason: str) -> None:
        for listener in list(self._exit_listeners):
            try:
                listener(instance_id, reason)
            except Exception:  # one broken listener must not starve the others
                log.exception("a container exit listener failed")

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        filters = {"type": "container", "event": "die", "label": _label_filters(self.labels)}
        since = time.time()  # after a reconnect, replay what died while the stream was down
        while not self._events_stop.is_set():
            try:
                stream = self._docker_call(lambda: self.client.events(
                    decode=True, filters=filters, since=f"{since:.6f}"))
                for event in stream:
                    since = max(since, event.get("timeNano", 0) / 1e9)
                    self._report_exit(loop, event.get("Actor", {}))
            except BackendUnavailable:
                pass  # logged once per outage by _docker_call
            except Exception:  # the stream broke mid-way (daemon restarted): reconnect
                log.warning("Docker event stream broke; reconnecting", exc_info=True)
            self._events_stop.wait(1.0)  # backoff before reconnecting

    def _report_exit(self, loop: asyncio.AbstractEventLoop, actor: dict[str, Any]) -> None:
        instance_id = actor.get("Attributes", {}).get(LABEL_PREFIX + "sandbox")
        if instance_id:
            # "die" means it stopped, so this names how, or that it is already gone
            reason = self._exit_reason_now(actor.get("ID", "")) or "its process stopped"
            loop.call_soon_threadsafe(self._on_exit, instance_id, reason)

    def close(self) -> None:
        self._events_stop.set()
        if self._client is not None:
            self._client.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _label_filters(labels: dict[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in labels.items()]
