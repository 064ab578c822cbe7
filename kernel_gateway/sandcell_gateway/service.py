"""The sandbox service: what the HTTP handlers call. No HTTP in here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncGenerator, Awaitable
from typing import Any

from .backend import DockerBackend
from .config import GatewayConfig, TemplateConfig
from .errors import BadRequest, NotFound
from .kernel import KernelConnection
from .pool import WarmPool
from .sandbox import Event, Sandbox
from .store import CellRecorder, HistoryStore

log = logging.getLogger(__name__)

SANDBOX_ID = re.compile(r"^sbx_[0-9a-f]{16}$")


class SandboxService:
    """Claims sandboxes from warm pools, runs code in them, and destroys them.

    Example::

        service = SandboxService(config, DockerBackend(config))
        await service.start()
        sandbox = await service.create(template="python")
        async for event in service.execute(sandbox.id, "1+1"):
            ...
        await service.delete(sandbox.id)
        await service.close()
    """

    def __init__(self, config: GatewayConfig, backend: DockerBackend) -> None:
        self.config = config
        self.backend = backend
        slots = asyncio.Semaphore(config.launch_concurrency)
        self.pools = {name: WarmPool(t, launch=self._launch, destroy=self._destroy,
                                     launch_slots=slots)
                      for name, t in config.templates.items()}
        self._sandboxes: dict[str, Sandbox] = {}
        self.store = HistoryStore(config.store_path)
        self._ttl_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Reap containers a previous run of this gateway left, then fill the pools."""
        removed = await self.backend.remove_all()
        if removed:
            log.info("removed %d container(s) left by a previous run", removed)
        self.backend.root.mkdir(parents=True, mode=0o700, exist_ok=True)
        await self.store.open()
        await self.store.mark_all_deleted()  # a previous run's sandboxes are gone (reaped above)
        await self._purge_history()
        self.backend.watch_exits(self._on_container_exit)
        for pool in self.pools.values():
            pool.start()
        self._ttl_task = asyncio.ensure_future(self._expire_forever())

    async def _launch(self, template: TemplateConfig, sandbox_id: str) -> Sandbox:
        handle = await self.backend.launch(template, sandbox_id)
        kernel = KernelConnection(handle.connection, output_limit=self.config.max_output_bytes)
        try:
            info = await kernel.wait_ready(self.config.ready_timeout)
        except BaseException:
            kernel.close()
            await self.backend.remove(handle)
            raise
        return Sandbox(handle, kernel, interrupt_grace=self.config.interrupt_grace,
                       language_info=dict(info.get("language_info") or {}))

    async def _destroy(self, sandbox: Sandbox) -> None:
        sandbox.kernel.close()
        await self.backend.remove(sandbox.handle)

    def _on_container_exit(self, container_sandbox_id: str, reason: str) -> None:
        for sandbox in self._sandboxes.values():
            if sandbox.handle.sandbox_id == container_sandbox_id:
                log.warning("sandbox %s died: %s", sandbox.id, reason)
                sandbox.mark_dead(reason)
                return
        for pool in self.pools.values():
            pool.discard(container_sandbox_id)

    async def create(self, template: str = "python", *, ttl: float | None = None,
                     env: dict[str, str] | None = None,
                     metadata: dict[str, str] | None = None) -> Sandbox:
        pool = self.pools.get(template)
        if pool is None:
            raise BadRequest(f"unknown template {template!r}; configured: "
                             f"{', '.join(sorted(self.pools))}", code="unknown_template")
        sandbox = await pool.claim(self._claim_timeout(pool))
        sandbox.created_at = time.time()
        sandbox.expires_at = sandbox.created_at + (ttl or self.config.sandbox_ttl)
        sandbox.metadata = dict(metadata or {})
        self._sandboxes[sandbox.id] = sandbox
        try:
            await self._remember(self.store.add_sandbox(sandbox.id, template, sandbox.metadata,
                                                        sandbox.language_info))
            await sandbox.apply_env(env or {})
        except BaseException:
            await self.delete(sandbox.id)
            raise
        return sandbox

    def _claim_timeout(self, pool: WarmPool) -> float:
        return pool.template.claim_timeout or self.config.claim_timeout

    def get(self, sandbox_id: str) -> Sandbox:
        sandbox = self._sandboxes.get(sandbox_id) if SANDBOX_ID.match(sandbox_id) else None
        if sandbox is None:
            raise NotFound(f"no sandbox {sandbox_id!r}")
        return sandbox

    def list(self) -> list[Sandbox]:
        return list(self._sandboxes.values())

    async def delete(self, sandbox_id: str) -> None:
        sandbox = self.get(sandbox_id)
        del self._sandboxes[sandbox_id]
        await self._remember(self.store.mark_deleted(sandbox_id))
        await self.pools[sandbox.template].release(sandbox)
        await self._purge_history()

    def execute(self, sandbox_id: str, code: str, timeout: float | None
                ) -> AsyncGenerator[Event, None]:
        """The cell's events; the cell goes into the sandbox's history when it finishes."""
        sandbox = self.get(sandbox_id)
        return self._recorded(sandbox_id, code, sandbox.execute(code, timeout=timeout))

    async def _recorded(self, sandbox_id: str, code: str, events: AsyncGenerator[Event, None]
                        ) -> AsyncGenerator[Event, None]:
        recorder, started = CellRecorder(code), False
        try:
            async for event in events:
                started = True
                recorder.add(event)
                yield event
        finally:
            await events.aclose()
            # a client that left early still leaves a record of what it saw (status None);
            # a request refused before the kernel started (dead sandbox) leaves none
            if started:
                await self._remember(self.store.add_cell(sandbox_id, recorder.finish()))

    @staticmethod
    async def _remember(operation: Awaitable[None]) -> None:
        try:
            await operation
        except Exception:  # history is a convenience: never fail the caller's request for it
            log.exception("could not write to the history store")

    async def notebook(self, sandbox_id: str) -> dict[str, Any]:
        """The sandbox's history as a notebook; kept ``history_retention`` s after deletion."""
        notebook = await self.store.notebook(sandbox_id) if SANDBOX_ID.match(sandbox_id) else None
        if notebook is None:
            raise NotFound(f"no sandbox {sandbox_id!r} (or its history expired)")
        return notebook

    async def _purge_history(self) -> None:
        purged = await self.store.purge(time.time() - self.config.history_retention)
        if purged:
            log.info("forgot the history of %d deleted sandbox(es)", purged)

    async def interrupt(self, sandbox_id: str) -> None:
        await self.get(sandbox_id).interrupt()

    async def restart(self, sandbox_id: str) -> Sandbox:
        """Swap in a fresh warm kernel under the same id (instant, unlike a kernel restart)."""
        old = self.get(sandbox_id)
        pool = self.pools[old.template]
        fresh = await pool.claim(self._claim_timeout(pool))
        fresh.public_id = sandbox_id
        fresh.created_at, fresh.expires_at = old.created_at, old.expires_at
        fresh.metadata = old.metadata
        self._sandboxes[sandbox_id] = fresh
        await pool.release(old)
        await fresh.apply_env(old.env)
        return fresh

    def stats(self) -> dict[str, Any]:
        return {name: pool.stats() for name, pool in self.pools.items()}

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)  # poll: TTLs are coarse, one check a second is plenty
            now = time.time()
            for sandbox in [s for s in self._sandboxes.values() if s.expires_at <= now]:
                log.info("sandbox %s expired", sandbox.id)
                with contextlib.suppress(NotFound):
                    await self.delete(sandbox.id)

    async def close(self) -> None:
        """Destroy every sandbox this gateway started; nothing is left behind."""
        if self._ttl_task is not None:
            self._ttl_task.cancel()
        claimed, self._sandboxes = list(self._sandboxes.values()), {}
        await asyncio.gather(*(self._destroy(s) for s in claimed), return_exceptions=True)
        await asyncio.gather(*(p.close() for p in self.pools.values()), return_exceptions=True)
        await self.backend.remove_all()
        self.backend.close()
        if self.store.is_open:
            await self.store.mark_all_deleted()
            await self.store.close()

