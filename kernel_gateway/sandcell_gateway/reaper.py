"""Remove containers in the background, so destroying a sandbox costs its caller nothing.

Removing a container (kill, unmount its overlay, delete it) takes Docker 150-190 ms on this
machine: on the request path that was most of a ``DELETE``. The caller makes the sandbox
unreachable first (its kernel connection closed, its id forgotten), then hands the container
to the :class:`Reaper`, which removes it while the next claim is already being served.

Nothing leaks: a removal Docker refuses or cannot hear is retried until it succeeds, the
gateway's shutdown waits for the queue and then removes every labelled container anyway, and a
crashed gateway's next start reaps whatever was still queued (recovery.py: a container no live
record names is removed).

Example::

    reaper = Reaper(kernels)  # a KernelProvisioner
    reaper.remove(handle)       # returns at once
    await reaper.close()        # at shutdown: wait for the queue
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from .provisioner import ContainerHandle
from .errors import BackendUnavailable

log = logging.getLogger(__name__)

# Removals at once: each is mostly the daemon's work; two keep the queue short without
# taking every Docker thread the launches need.
CONCURRENCY = 2
RETRY_EVERY = 1.0  # s between attempts while Docker is unreachable
CLOSE_TIMEOUT = 30.0  # s shutdown waits for the queue (remove_all sweeps up after it)


class Remover(Protocol):
    """The removal call (``KernelProvisioner.remove``): idempotent, may raise
    :class:`BackendUnavailable`."""

    async def remove(self, handle: ContainerHandle) -> None: ...


class Reaper:
    """A queue of containers to remove, worked off ``CONCURRENCY`` at a time."""

    def __init__(self, remover: Remover, concurrency: int = CONCURRENCY,
                 retry_every: float = RETRY_EVERY) -> None:
        self._remover = remover
        self._slots = asyncio.Semaphore(concurrency)
        self._retry_every = retry_every
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight: set[asyncio.Task[None]] = set()  # past the queue, talking to Docker
        self._queued: set[str] = set()  # container ids queued or being removed
        self.removed = 0  # containers removed since start (for /health and the bench)

    @property
    def pending(self) -> int:
        """Containers queued or being removed."""
        return len(self._tasks)

    def remove(self, handle: ContainerHandle) -> None:
        """Queue ``handle``'s container for removal; returns at once. Queuing one twice (a
        guard's cut-off, then the client's delete) removes it once: Docker refuses a second
        removal while one runs."""
        if handle.container_id in self._queued:
            return
        self._queued.add(handle.container_id)
        handle.removing = True  # its death from now on is expected, not news
        task = asyncio.ensure_future(self._remove(handle))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._queued.discard(handle.container_id))

    async def _remove(self, handle: ContainerHandle) -> None:
        async with self._slots:
            task = asyncio.current_task()
            assert task is not None
            self._inflight.add(task)
            try:
                await self._retry_until_removed(handle)
            finally:
                self._inflight.discard(task)

    async def _retry_until_removed(self, handle: ContainerHandle) -> None:
        while True:
            try:
                await self._remover.remove(handle)
            except BackendUnavailable as exc:
                log.info("removing container %s failed (%s); retrying",
                         handle.container_id[:12], exc)
                handle.removing = True  # remove() clears it on failure
                await asyncio.sleep(self._retry_every)  # a backoff, not a synchronisation
                continue
            except Exception:  # a bug must not kill the queue; shutdown sweeps it up
                log.exception("removing container %s failed", handle.container_id[:12])
                return
            self.removed += 1
            return

    async def wait_idle(self) -> None:
        """Until every queued removal finished (those queued meanwhile too)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Drop the queue, let the removals under way finish (up to ``timeout``): the caller
        removes every labelled container after this, all at once, which is faster than
        working the queue off two at a time."""
        for task in self._tasks - self._inflight:
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.wait_idle()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
