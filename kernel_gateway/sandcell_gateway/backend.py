"""Docker backend: launch, watch and remove hardened kernel containers.

Shaped like jupyter_client's provisioners (launch / poll / kill / cleanup). Every docker-py
call blocks, so each one runs on a small thread pool of its own, never on the event loop.
Containers are found by label, never by name.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
from docker.types import LogConfig

from .config import GatewayConfig, TemplateConfig
from .errors import BackendUnavailable, GatewayError
from .kernel import write_connection_file

log = logging.getLogger(__name__)
T = TypeVar("T")

LABEL_PREFIX = "org.sandcell."
SANDBOX_HOME = "/home/sandbox"


@dataclasses.dataclass
class ContainerHandle:
    """A started container and how to reach its kernel from the host."""

    container_id: str
    sandbox_id: str
    template: str
    conn_dir: Path
    connection: dict[str, Any]


def sandbox_uid() -> int:
    """The uid kernels run as. A non-root gateway runs them as itself so it can reach their
    ipc sockets (which the kernel creates with mode 0755)."""
    return 1000 if os.getuid() == 0 else os.getuid()


def run_options(template: TemplateConfig, uid: int) -> dict[str, Any]:
    """docker-py ``containers.run`` keyword arguments for the template's hardening."""
    limits = template.limits
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
        "environment": {"HOME": SANDBOX_HOME, "SANDCELL_CONNECTION_FILE": "/conn/kernel.json"},
    }


class DockerBackend:
    """Launches sandbox containers for one gateway and tracks them by its labels.

    Example::

        backend = DockerBackend(config)
        handle = await backend.launch(config.template("python"), "sbx_0123456789abcdef")
        await backend.remove(handle)
    """

    def __init__(self, config: GatewayConfig, client: docker.DockerClient | None = None) -> None:
        self._config = config
        self._client = client
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="docker")
        self._events_stop = threading.Event()
        self._uid = sandbox_uid()
        # per gateway: several gateways (tests, a user's own) may share the state_dir
        self.root = config.state_dir / config.gateway_id

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
            return fn(*args, **kwargs)
        except docker.errors.ImageNotFound as exc:
            raise GatewayError(f"sandbox image missing ({exc.explanation}); "
                               "build it with `sandcell images build`", code="image_missing") from exc
        except (docker.errors.APIError, docker.errors.DockerException,
                requests.exceptions.RequestException) as exc:
            raise BackendUnavailable(f"Docker did not answer: {exc}") from exc

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = self._docker_call(docker.from_env, max_pool_size=16)
        return self._client

    async def launch(self, template: TemplateConfig, sandbox_id: str) -> ContainerHandle:
        """Start a container whose kernel listens on ipc sockets in a fresh host directory."""
        conn_dir = self.root / sandbox_id
        conn_dir.mkdir(parents=True, mode=0o700)
        try:
            connection = write_connection_file(conn_dir, self._uid if os.getuid() == 0 else None)
            labels = {**self.labels, LABEL_PREFIX + "sandbox": sandbox_id,
                      LABEL_PREFIX + "template": template.name, LABEL_PREFIX + "tenant": "default"}
            container = await self.run(
                self.client.containers.run, template.image, detach=True, labels=labels,
                volumes={str(conn_dir): {"bind": "/conn", "mode": "rw"}},
                **run_options(template, self._uid))
        except BaseException:
            shutil.rmtree(conn_dir, ignore_errors=True)
            raise
        return ContainerHandle(container.id, sandbox_id, template.name, conn_dir, connection)

    async def poll(self, handle: ContainerHandle) -> str | None:
        """The container's status (``running``, ``exited``, ...), or None when it is gone."""
        try:
            container = await self.run(self.client.containers.get, handle.container_id)
        except BackendUnavailable as exc:
            if isinstance(exc.__cause__, docker.errors.NotFound):
                return None
            raise
        return str(container.status)

    async def remove(self, handle: ContainerHandle) -> None:
        """Kill and remove the container and its connection directory. Idempotent."""
        try:
            await self.run(self._remove_by_id, handle.container_id)
        finally:
            shutil.rmtree(handle.conn_dir, ignore_errors=True)

    def _remove_by_id(self, container_id: str) -> None:
        try:
            self.client.api.remove_container(container_id, force=True, v=True)
        except docker.errors.NotFound:
            pass

    async def remove_all(self) -> int:
        """Remove every container this gateway owns (used at start and at shutdown)."""
        containers = await self.run(self.client.api.containers, all=True, quiet=True,
                                     filters={"label": _label_filters(self.labels)})
        await asyncio.gather(*(self.run(self._remove_by_id, c["Id"]) for c in containers))
        shutil.rmtree(self.root, ignore_errors=True)
        return len(containers)

    def watch_exits(self, on_exit: Callable[[str, str], None]) -> None:
        """Call ``on_exit(sandbox_id, reason)`` on the loop whenever one of our containers
        dies; ``reason`` says why in words a user can act on."""
        loop = asyncio.get_running_loop()
        thread = threading.Thread(target=self._watch, args=(loop, on_exit),
                                  name="docker-events", daemon=True)
        thread.start()

    def _watch(self, loop: asyncio.AbstractEventLoop, on_exit: Callable[[str, str], None]) -> None:
        filters = {"type": "container", "event": "die", "label": _label_filters(self.labels)}
        while not self._events_stop.is_set():
            try:
                for event in self.client.events(decode=True, filters=filters):
                    actor = event.get("Actor", {})
                    sandbox_id = actor.get("Attributes", {}).get(LABEL_PREFIX + "sandbox")
                    if sandbox_id:
                        reason = self._death_reason(actor.get("ID", ""), actor["Attributes"])
                        loop.call_soon_threadsafe(on_exit, sandbox_id, reason)
            except Exception:  # daemon restarted or unreachable: retry after a backoff
                log.warning("Docker event stream broke; reconnecting", exc_info=True)
            self._events_stop.wait(1.0)  # backoff before reconnecting

    def _death_reason(self, container_id: str, attributes: dict[str, str]) -> str:
        """Runs on the events thread, so the blocking inspect is fine here."""
        try:
            state = self.client.api.inspect_container(container_id)["State"]
        except docker.errors.DockerException:
            return "its container was removed"
        if state.get("OOMKilled"):
            return "out of memory: the code used more than the sandbox's memory limit"
        return f"its container exited with code {attributes.get('exitCode', state.get('ExitCode'))}"

    def close(self) -> None:
        self._events_stop.set()
        if self._client is not None:
            self._client.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _label_filters(labels: dict[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in labels.items()]
