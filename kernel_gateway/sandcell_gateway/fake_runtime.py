"""An in-memory :class:`~sandcell_gateway.containers.ContainerRuntime` for unit tests.

It starts nothing: ``launch`` records the spec and returns an id, ``stop`` makes a container
exit (and tells the exit listeners, as Docker's events would), ``unreachable`` makes every
call fail as an unreachable daemon does. Subclass it and override :meth:`started` to run
something real for each launch (the plugin tests serve PPP in-process there).

Example::

    runtime = FakeRuntime()
    container_id = await runtime.launch(spec)
    runtime.stop(container_id, "its process exited with code 3")
    assert await runtime.exit_reason(container_id) == "its process exited with code 3"
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

from .containers import ContainerInfo, ContainerRuntime, ExitListener, LaunchSpec
from .errors import BackendUnavailable


@dataclasses.dataclass
class FakeContainer:
    id: str
    spec: LaunchSpec
    exit_reason: str | None = None  # None while it runs


class FakeRuntime:
    """Containers as records; see the module docstring."""

    def __init__(self, images: frozenset[str] | None = None) -> None:
        self.images = images  # None: every image is present
        self.containers_by_id: dict[str, FakeContainer] = {}
        self.removed: list[str] = []  # container ids, in removal order
        self.address = "fake://"
        self.reachable = True
        self.last_error = ""
        self._listeners: list[tuple[asyncio.AbstractEventLoop, ExitListener]] = []
        self._ids = itertools.count(1)

    def unreachable(self, why: str = "the fake runtime is down") -> None:
        self.reachable, self.last_error = False, why

    def _call(self) -> None:
        if not self.reachable:
            raise BackendUnavailable(self.last_error)

    async def started(self, container: FakeContainer) -> None:
        """Called by ``launch`` once the container is recorded; a subclass runs its payload."""

    async def launch(self, spec: LaunchSpec) -> str:
        self._call()
        container = FakeContainer(f"ctr{next(self._ids):08d}", spec)
        self.containers_by_id[container.id] = container
        await self.started(container)
        return container.id

    def stop(self, container_id: str, reason: str) -> None:
        """The container exits with ``reason``; every exit listener hears of it."""
        container = self.containers_by_id[container_id]
        container.exit_reason = reason
        for loop, listener in self._listeners:
            loop.call_soon(listener, container.spec.instance_id, reason)

    async def remove(self, container_id: str) -> None:
        self._call()
        self.containers_by_id.pop(container_id, None)  # an unknown id is no error, as in Docker
        self.removed.append(container_id)

    async def exit_reason(self, container_id: str, wait: float = 0.0) -> str | None:
        container = self.containers_by_id.get(container_id)
        return "its container was removed" if container is None else container.exit_reason

    async def logs(self, container_id: str, tail: int) -> str:
        return ""

    async def image_present(self, image: str) -> bool:
        self._call()
        return self.images is None or image in self.images

    async def containers(self) -> list[ContainerInfo]:
        self._call()
        return [ContainerInfo(c.id, c.spec.instance_id, c.exit_reason is None)
                for c in self.containers_by_id.values()]

    async def remove_all(self) -> int:
        ids = list(self.containers_by_id)
        for container_id in ids:
            await self.remove(container_id)
        return len(ids)

    def watch_exits(self, on_exit: ExitListener) -> None:
        self._listeners.append((asyncio.get_running_loop(), on_exit))

    def when_reachable_again(self, callback: Callable[[], None]) -> None:
        pass  # the fake never comes back on its own: a test sets ``reachable``

    async def ping(self, timeout: float = 2.0) -> bool:
        return self.reachable

    def close(self) -> None:
        pass


if TYPE_CHECKING:  # mypy proves the fake keeps up with the protocol it stands in for
    _implements: ContainerRuntime = FakeRuntime()
