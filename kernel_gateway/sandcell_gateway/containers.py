"""The container runtime seam: all that pools, sandboxes, plugin workers and recovery may ask
of whatever runs their containers.

jupyter_client draws the same line with ``KernelProvisionerBase`` and Enterprise Gateway with
its process proxies: the callers say *what* to run (a :class:`LaunchSpec`: image, mounts,
environment, the template's limits) and the runtime decides *how* (docker-py's
``containers.run`` options, labels, the hardening flags). :class:`DockerBackend`
(backend.py) is the implementation; ``sandcell_gateway.fake_runtime.FakeRuntime`` is a typed
fake for unit tests.

Every container carries its *instance id* (a sandbox's or a plugin worker's) as a label, so
exits and recovery find it without a name or a registry of container ids.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from .config import Limits

LABEL_PREFIX = "org.sandcell."
SANDBOX_HOME = "/home/sandbox"

# ``on_exit(instance_id, reason)``: a container of this gateway stopped; ``reason`` says why
# in words a user can act on ("out of memory: ...", "its process exited with code 3").
ExitListener = Callable[[str, str], None]


def sandbox_uid() -> int:
    """The uid containers run as. A non-root gateway runs them as itself, so it can reach the
    sockets they create in ``/conn`` (the kernel makes its ipc sockets with mode 0755)."""
    return 1000 if os.getuid() == 0 else os.getuid()


@dataclasses.dataclass(frozen=True)
class Mount:
    """A host directory bound into the container."""

    source: Path
    target: str
    read_only: bool = False


@dataclasses.dataclass(frozen=True)
class LaunchSpec:
    """One hardened container to start: what it runs, what it sees, whose it is."""

    image: str
    instance_id: str  # the sandbox's or the worker's id; exits are reported by it
    template: str  # the template (or plugin) it belongs to, for tools and recovery
    limits: Limits
    mounts: tuple[Mount, ...] = ()
    environment: Mapping[str, str] = dataclasses.field(default_factory=dict)
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)  # extra, e.g. plugin
    oci_runtime: str = ""  # e.g. "crun" when the daemon has it registered; "": its default


@dataclasses.dataclass(frozen=True)
class ContainerInfo:
    """One of this gateway's containers, as found by its labels."""

    id: str
    instance_id: str
    running: bool


class ContainerRuntime(Protocol):
    """Starts, watches and removes this gateway's containers.

    Calls raise :class:`~sandcell_gateway.errors.BackendUnavailable` while the runtime cannot
    be reached (``reachable`` is then False, ``last_error`` says why) and
    ``GatewayError(code="image_missing")`` for an image that is not there.
    """

    @property
    def address(self) -> str:
        """Where the runtime is (e.g. ``unix:///var/run/docker.sock``), for /health."""
        ...

    @property
    def reachable(self) -> bool: ...

    @property
    def last_error(self) -> str: ...

    async def launch(self, spec: LaunchSpec) -> str:
        """Start the container; return its id."""
        ...

    async def remove(self, container_id: str) -> None:
        """Kill and remove it; a container already gone is not an error."""
        ...

    async def exit_reason(self, container_id: str, wait: float = 0.0) -> str | None:
        """None while it runs (after waiting up to ``wait`` s for it to stop); else how it
        ended, in words a user can act on."""
        ...

    async def logs(self, container_id: str, tail: int) -> str:
        """The last ``tail`` lines it printed ("" if there are none or it is gone)."""
        ...

    async def image_present(self, image: str) -> bool: ...

    async def containers(self) -> list[ContainerInfo]:
        """This gateway's containers, running or not."""
        ...

    async def remove_all(self) -> int:
        """Remove every container this gateway owns (at shutdown); how many there were."""
        ...

    def watch_exits(self, on_exit: ExitListener) -> None:
        """Report every exit of this gateway's containers to ``on_exit``, on the caller's
        event loop; every listener gets every exit."""
        ...

    def when_reachable_again(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` on this loop each time the runtime answers after an outage."""
        ...

    async def ping(self, timeout: float = 2.0) -> bool:
        """Whether the runtime answers now (``reachable`` is only as fresh as the last call)."""
        ...

    def close(self) -> None: ...
