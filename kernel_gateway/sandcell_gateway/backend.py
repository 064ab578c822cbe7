"""Docker backend: launch, watch and remove hardened kernel containers.

Shaped like jupyter_client's provisioners (launch / poll / kill / cleanup). Every docker-py
call blocks, so each one runs on a small thread pool of its own, never on the event loop.
Containers are found by label, never by name.

Docker may go away for a while (daemon restart, socket proxy down): calls then raise
:class:`BackendUnavailable` (HTTP 503 ``backend_unavailable``), ``reachable`` turns False,
and the next call that gets through turns it True again. Nothing needs a gateway restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import shutil
import threading
import time
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
from .kernel import read_connection_file, write_connection_file

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
    removing: bool = False  # its death is expected, not news
    removed: bool = False


def sandbox_uid() -> int:
    """The uid kernels run as. A non-root gateway runs them as itself so it can reach their
    ipc sockets (which the kernel creates with mode 0755)."""
    return 1000 if os.getuid() == 0 else os.getuid()


def run_options(template: TemplateConfig, uid: int) -> dict[str, Any]:
    """docker-py ``containers.run`` keyword arguments for the template's hardening."""
    limits = template.limits
    runtime = {"runtime": template.runtime} if template.runtime else {}  # e.g. crun, if registered
    return {
        **runtime,
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
        self._exit_listeners: list[Callable[[str, str], None]] = []
        self._uid = sandbox_uid()
        self.docker_host = (config.docker_host or os.environ.get("DOCKER_HOST")
                            or "unix:///var/run/docker.sock")
        self.reachable = True
        self.last_error = ""
        self._on_reachable: list[tuple[asyncio.AbstractEventLoop, Callable[[], None]]] = []
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
            log.info("Docker at %s is reachable again", self.docker_host)
            for loop, callback in self._on_reachable:
                loop.call_soon_threadsafe(callback)
        self.reachable, self.last_error = True, ""

    def when_reachable_again(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` on this loop each time Docker answers after an outage (the
        events watcher notices within a second), e.g. to end the pools' backoff."""
        self._on_reachable.append((asyncio.get_running_loop(), callback))

    def _unreachable(self, exc: BaseException) -> str:
        message = (f"Docker is unreachable at {self.docker_host} ({exc}); the gateway keeps "
                   "retrying on its own: retry the request later")
        if self.reachable:  # once per outage, not once per failed call
            log.warning("%s", message)
        self.reachable, self.last_error = False, message
        return message

    async def ping(self, timeout: float = 2.0) -> bool:
        """Whether Docker answers now (``reachable`` is only as fresh as the last call)."""
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

    async def launch(self, template: TemplateConfig, sandbox_id: str) -> ContainerHandle:
        """Start a container whose kernel listens on ipc sockets in a fresh host directory."""
        conn_dir = self.root / sandbox_id
        conn_dir.mkdir(parents=True, mode=0o700)
        try:
            connection = write_connection_file(conn_dir, self._uid if os.getuid() == 0 else None)
            labels = {**self.labels, LABEL_PREFIX + "sandbox": sandbox_id,
                      LABEL_PREFIX + "template": template.name}
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
        """Kill and remove the container, then its connection directory. Idempotent.

        When Docker is unreachable this raises and keeps both: the kernel still works (it needs
        no Docker call) and the caller can retry.
        """
        if handle.removed:
            return
        handle.removing = True
        try:
            await self.run(self._remove_by_id, handle.container_id)
        finally:
            handle.removing = False
        handle.removed = True
        shutil.rmtree(handle.conn_dir, ignore_errors=True)

    async def remove_container(self, container_id: str) -> None:
        await self.run(self._remove_by_id, container_id)

    def _remove_by_id(self, container_id: str) -> None:
        try:
            self.client.api.remove_container(container_id, force=True, v=True)
        except docker.errors.NotFound:
            pass

    async def containers(self) -> list[dict[str, Any]]:
        """This gateway's containers, running or not (Docker's summaries: Id, State, Labels)."""
        filters = {"label": _label_filters(self.labels)}
        return await self.run(lambda: self.client.api.containers(all=True, filters=filters))

    def reattach(self, container_id: str, sandbox_id: str, template: str) -> ContainerHandle:
        """A handle on a container a previous run started (``OSError``/``ValueError`` when its
        connection directory is gone)."""
        conn_dir = self.root / sandbox_id
        return ContainerHandle(container_id, sandbox_id, template, conn_dir,
                               read_connection_file(conn_dir))

    def remove_dirs_except(self, keep: set[str]) -> None:
        """Remove connection directories of sandboxes not in ``keep`` (a crashed run's)."""
        for path in self.root.iterdir() if self.root.is_dir() else ():
            if path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)

    async def remove_all(self) -> int:
        """Remove every container this gateway owns (used at shutdown)."""
        containers = await self.containers()
        await asyncio.gather(*(self.remove_container(c["Id"]) for c in containers))
        shutil.rmtree(self.root, ignore_errors=True)
        return len(containers)

    def watch_exits(self, on_exit: Callable[[str, str], None]) -> None:
        """Call ``on_exit(sandbox_id, reason)`` on the loop whenever one of our containers
        dies; ``reason`` says why in words a user can act on. Every listener gets every exit
        (a plugin worker's id is its ``sandbox`` label); one events stream serves them all."""
        self._exit_listeners.append(on_exit)
        if len(self._exit_listeners) == 1:
            thread = threading.Thread(target=self._watch, args=(asyncio.get_running_loop(),),
                                      name="docker-events", daemon=True)
            thread.start()

    def _on_exit(self, sandbox_id: str, reason: str) -> None:
        for listener in list(self._exit_listeners):
            try:
                listener(sandbox_id, reason)
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
        sandbox_id = actor.get("Attributes", {}).get(LABEL_PREFIX + "sandbox")
        if sandbox_id:
            reason = self._death_reason(actor.get("ID", ""), actor["Attributes"])
            loop.call_soon_threadsafe(self._on_exit, sandbox_id, reason)

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
