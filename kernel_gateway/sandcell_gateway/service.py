"""The sandbox service: what the HTTP handlers call. No HTTP in here."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from .agent import AgentConnection
from .config import GatewayConfig, TemplateConfig
from .containers import ContainerRuntime
from .errors import BackendUnavailable, BadRequest, NotFound
from .guard import KernelGuard, MessageLimits
from .kernel import KernelConnection
from .pool import WarmPool
from .pool_sizing import MemoryBudget, ReadyTarget, parse_size
from .provisioner import ContainerHandle, KernelProvisioner
from .reaper import Reaper
from .recovery import Recovery
from .sandbox import REMOVED, Event, Sandbox
from .store import CellRecord, CellRecorder, HistoryStore, SandboxRecord, remember
from .tenants import Tenant, check_caps
from .wire import is_sandbox_id, new_sandbox_id

log = logging.getLogger(__name__)

MAX_REMEMBERED = 10_000  # why recently removed sandboxes went, for the 404 that follows


class SandboxService:
    """Claims sandboxes from warm pools, runs code in them, and destroys them.

    Every call names the tenant making it: a tenant sees only the sandboxes it created, and
    another tenant's sandbox is "not found", exactly like an id that never existed.

    Example::

        store = HistoryStore(config.store_path)
        service = SandboxService(config, DockerBackend(config), store)  # any ContainerRuntime
        await service.start()
        sandbox = await service.create(tenant, template="python")
        async for event in service.execute(sandbox.id, tenant, "1+1", timeout=None):
            ...
        await service.delete(sandbox.id, tenant)
        await service.close()
    """

    def __init__(self, config: GatewayConfig, runtime: ContainerRuntime,
                 store: HistoryStore) -> None:
        self.config = config
        self.runtime = runtime
        # shared with the Jupyter service (server.py wires both); opened by start, closed last
        # by close, after the final records are written
        self.store = store
        self.kernels = KernelProvisioner(config, runtime)
        self._reaper = Reaper(self.kernels)  # containers go in the background, off the request path
        slots = asyncio.Semaphore(config.launch_concurrency)
        budget = MemoryBudget(parse_size(config.pool_memory_budget))
        self.pools = {name: WarmPool[Sandbox](t, launch=self._launch, destroy=self._destroy,
                                              new_id=new_sandbox_id, launch_slots=slots,
                                              refill_delay=config.refill_delay,
                                              sizing=_sizing(t), budget=budget,
                                              ready_memory=parse_size(t.ready_memory))
                      for name, t in config.templates.items()}
        self._sandboxes: dict[str, Sandbox] = {}
        # why recently removed sandboxes went, told to their own tenant: id -> (tenant, reason)
        self._removed: collections.OrderedDict[str, tuple[str, str]] = collections.OrderedDict()
        # tenant -> claims in flight (they count against the caps before they land)
        self._claiming: collections.Counter[str] = collections.Counter()
        self._ttl_task: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Future[None]] = set()  # history writes nobody awaits
        self.guard = KernelGuard(message_limits(config),
                                 config.state_dir / f"{config.gateway_id}-relays")

    async def start(self) -> None:
        """Re-adopt what a crashed run left (see recovery.py), reap the rest, fill the pools."""
        self.kernels.prepare()
        self.guard.reset()
        await self.store.open()
        # before recovery, so a sandbox dying while it is checked is still noticed
        self.runtime.watch_exits(self._on_container_exit)
        self.runtime.when_reachable_again(self._retry_pools)
        adopted, report = await Recovery(self.config, self.runtime, self.kernels, self.store,
                                         connect=self.connect).run()
        for sandbox in adopted:
            self._sandboxes[sandbox.id] = sandbox
            self.pools[sandbox.template].adopt(sandbox)
        log.info("%s", report)
        await self._purge_history()
        for pool in self.pools.values():
            pool.start()
        self._ttl_task = asyncio.ensure_future(self._expire_forever())

    def _retry_pools(self) -> None:
        for pool in self.pools.values():
            pool.retry_now()

    async def _launch(self, template: TemplateConfig, sandbox_id: str) -> Sandbox:
        handle = await self.kernels.launch(template, sandbox_id)
        kernel = self.connect(handle)
        agent = AgentConnection(handle.conn_dir) if template.agent else None
        try:
            async with asyncio.timeout(self.config.ready_timeout):
                # ready only when both have answered; they start side by side
                info, _ = await asyncio.gather(self._kernel_ready(kernel),
                                               _agent_ready(agent, self.config.ready_timeout))
        except BaseException:
            kernel.close()
            if agent is not None:
                agent.close()
            await self.kernels.remove(handle)
            raise
        return Sandbox(handle, kernel, interrupt_grace=self.config.interrupt_grace,
                       language_info=dict(info.get("language_info") or {}), agent=agent)

    async def _kernel_ready(self, kernel: KernelConnection) -> dict[str, Any]:
        info = await kernel.wait_ready(self.config.ready_timeout)
        await kernel.warm_up()
        return info

    def connect(self, handle: ContainerHandle) -> KernelConnection:
        """A connection to the container's kernel, every byte from it through the guard."""
        guard = self.guard.sandbox(handle.sandbox_id,
                                   lambda reason: self._on_violation(handle, reason))
        return KernelConnection(handle.connection, output_limit=self.config.max_output_bytes,
                                guard=guard,
                                max_message_bytes=self.config.max_kernel_message_bytes)

    def _on_violation(self, handle: ContainerHandle, reason: str) -> None:
        """The guard cut a kernel off (see guard.py): it dies with that reason, now."""
        for sandbox in self._sandboxes.values():
            if sandbox.handle is handle:
                sandbox.mark_dead(reason)
                break
        else:
            for pool in self.pools.values():
                pool.drop_ready(handle.sandbox_id)
        self._reaper.remove(handle)

    async def _destroy(self, sandbox: Sandbox) -> None:
        """Unreachable at once (kernel connection closed, its commands killed); the container
        goes in the background."""
        sandbox.commands.close(f"sandbox {sandbox.id} was closed")
        sandbox.kernel.close()
        if sandbox.agent is not None:
            sandbox.agent.close()
        self._reaper.remove(sandbox.handle)

    def _require_docker(self) -> None:
        """Destroying needs Docker: while it is unreachable the sandbox stays, usable (503)."""
        if not self.runtime.reachable:
            raise BackendUnavailable(f"the sandbox was kept: {self.runtime.last_error}")

    def _on_container_exit(self, container_sandbox_id: str, reason: str) -> None:
        for sandbox in self._sandboxes.values():
            if sandbox.handle.sandbox_id == container_sandbox_id:
                if sandbox.handle.removing or sandbox.handle.removed:
                    return  # being deleted: its death is the point
                log.warning("sandbox %s died: %s", sandbox.id, reason)
                sandbox.mark_dead(reason)
                return
        for pool in self.pools.values():
            pool.drop_ready(container_sandbox_id)

    async def create(self, tenant: Tenant, template: str = "python", *,
                     ttl: float | None = None, env: dict[str, str] | None = None,
                     metadata: dict[str, str] | None = None) -> Sandbox:
        """Claim a warm sandbox for ``tenant``, within its caps and create rate (else 429)."""
        pool = self.pools.get(template)
        if pool is None:
            raise BadRequest(f"unknown template {template!r}; configured: "
                             f"{', '.join(sorted(self.pools))}", code="unknown_template")
        self._admit(tenant)
        self._claiming[tenant.name] += 1
        try:
            sandbox = await self._claim(pool)
        finally:
            self._claiming[tenant.name] -= 1
        sandbox.tenant = tenant.name
        sandbox.created_at = sandbox.last_active = time.time()
        sandbox.expires_at = sandbox.created_at + (ttl or self.config.sandbox_ttl)
        sandbox.metadata = dict(metadata or {})
        sandbox.env = dict(env or {})
        self._sandboxes[sandbox.id] = sandbox
        try:
            await remember(self.store.add_sandbox(_record(sandbox)))
            await sandbox.apply_env(sandbox.env)
        except BaseException:
            await self._remove(sandbox)
            raise
        return sandbox

    def _admit(self, tenant: Tenant) -> None:
        """Caps first (they spend nothing), then the create rate; claims in flight count."""
        owned = sum(1 for s in self._sandboxes.values() if s.tenant == tenant.name)
        total = len(self._sandboxes) + sum(self._claiming.values())
        check_caps(tenant, owned + self._claiming[tenant.name], total, self.config.max_sandboxes)
        tenant.admit_create()

    async def _claim(self, pool: WarmPool[Sandbox]) -> Sandbox:
        """A warm sandbox; while Docker is unreachable only one already warm (no waiting for
        a start that cannot happen: 503 at once)."""
        if not pool.has_ready and not self.runtime.reachable:
            raise BackendUnavailable(f"no warm {pool.template.name!r} sandbox is ready and "
                                     f"{self.runtime.last_error}")
        timeout = pool.template.claim_timeout or self.config.claim_timeout
        return await pool.claim(timeout)

    def get(self, sandbox_id: str, tenant: Tenant) -> Sandbox:
        """``tenant``'s sandbox; another tenant's is ``NotFound``, worded as for no sandbox."""
        sandbox = self._sandboxes.get(sandbox_id) if is_sandbox_id(sandbox_id) else None
        if sandbox is None or sandbox.tenant != tenant.name:
            owner, removed = self._removed.get(sandbox_id, ("", ""))
            raise NotFound(f"no sandbox {sandbox_id!r}" + (
                f": the gateway removed it ({removed})" if owner == tenant.name else ""))
        return sandbox

    def touch(self, sandbox_id: str) -> None:
        """Note client activity on a sandbox (it resets the idle clock); unknown ids are ignored."""
        sandbox = self._sandboxes.get(sandbox_id)
        if sandbox is not None:
            sandbox.touch()

    def set_timeout(self, sandbox_id: str, tenant: Tenant, seconds: float) -> Sandbox:
        """The sandbox now ends ``seconds`` from now, sooner or later than before (E2B's
        ``set_timeout``). Held in memory: a restarted gateway keeps the stored expiry."""
        sandbox = self.get(sandbox_id, tenant)
        sandbox.expires_at = time.time() + seconds
        sandbox.touch()
        return sandbox

    @property
    def templates(self) -> Mapping[str, TemplateConfig]:
        """The templates this service claims sandboxes of, by name (one warm pool each)."""
        return self.config.templates

    def list(self, tenant: Tenant) -> list[Sandbox]:
        return [s for s in self._sandboxes.values() if s.tenant == tenant.name]

    async def delete(self, sandbox_id: str, tenant: Tenant) -> None:
        await self._remove(self.get(sandbox_id, tenant))

    async def _remove(self, sandbox: Sandbox, reason: str = "deleted") -> None:
        """Forget the sandbox and close its kernel now; the container goes in the background
        (reaper.py). If Docker is unreachable the sandbox stays (503)."""
        if self._sandboxes.get(sandbox.id) is not sandbox:
            return  # already removed (or restarted: a fresh sandbox serves the id now)
        self._require_docker()
        del self._sandboxes[sandbox.id]
        await self.pools[sandbox.template].retire(sandbox)
        await remember(self.store.mark_deleted(sandbox.id, reason))
        await self._purge_history()

    def execute(self, sandbox_id: str, tenant: Tenant, code: str, timeout: float | None
                ) -> AsyncGenerator[Event, None]:
        """The cell's events (within the tenant's execute rate, else 429); the cell goes into
        the sandbox's history when it finishes."""
        sandbox = self.get(sandbox_id, tenant)
        tenant.admit_execute()
        sandbox.touch()
        return self._recorded(sandbox_id, code, sandbox.execute(code, timeout=timeout))

    async def _recorded(self, sandbox_id: str, code: str, events: AsyncGenerator[Event, None]
                        ) -> AsyncGenerator[Event, None]:
        recorder, started = CellRecorder(code), False
        try:
            async for event in events:
                started = True
                recorder.add(event)
                self.touch(sandbox_id)  # output reaching a client is activity
                yield event
        finally:
            await events.aclose()
            # a client that left early still leaves a record of what it saw (status None);
            # a request refused before the kernel started (dead sandbox) leaves none
            if started:
                await remember(self.store.add_cell(sandbox_id, recorder.finish()))

    def record_cell(self, sandbox_id: str, cell: CellRecord) -> None:
        """Add a cell a Jupyter client ran (over the WebSocket) to the sandbox's history."""
        if not self.store.is_open:
            return  # the gateway is shutting down
        write = asyncio.ensure_future(remember(self.store.add_cell(sandbox_id, cell)))
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)


    async def notebook(self, sandbox_id: str, tenant: Tenant) -> dict[str, Any]:
        """The sandbox's history as a notebook; kept ``history_retention`` s after deletion,
        also across gateway restarts (the store records the owner)."""
        notebook = None
        if is_sandbox_id(sandbox_id):
            notebook = await self.store.notebook(sandbox_id, tenant.name)
        if notebook is None:
            raise NotFound(f"no sandbox {sandbox_id!r} (or its history expired)")
        return notebook

    async def _purge_history(self) -> None:
        purged = await self.store.purge(time.time() - self.config.history_retention)
        if purged:
            log.info("forgot the history of %d deleted sandbox(es)", purged)

    async def interrupt(self, sandbox_id: str, tenant: Tenant) -> None:
        sandbox = self.get(sandbox_id, tenant)
        sandbox.touch()
        await sandbox.interrupt()

    async def restart(self, sandbox_id: str, tenant: Tenant) -> Sandbox:
        """Swap in a fresh warm kernel under the same id (instant, unlike a kernel restart).

        The tenant keeps one sandbox, so caps are not consulted; it spends one creation of
        the tenant's create rate (a warm container is claimed, else 429)."""
        old = self.get(sandbox_id, tenant)
        self._require_docker()  # keep the old one while Docker is away: the client retries
        tenant.admit_create()
        pool = self.pools[old.template]
        fresh = await self._claim(pool)
        fresh.public_id = sandbox_id
        fresh.created_at, fresh.expires_at = old.created_at, old.expires_at
        fresh.touch()
        fresh.metadata, fresh.tenant = old.metadata, old.tenant
        self._sandboxes[sandbox_id] = fresh
        await pool.retire(old)
        await remember(self.store.update_container(
            sandbox_id, fresh.handle.sandbox_id, fresh.handle.container_id, fresh.language_info))
        await fresh.apply_env(old.env)
        return fresh

    def stats(self) -> dict[str, Any]:
        return {name: pool.stats() for name, pool in self.pools.items()}

    async def docker_status(self) -> dict[str, Any]:
        """Whether Docker answers right now, where it is, and what failed last."""
        reachable = await self.runtime.ping()
        return {"reachable": reachable, "host": self.runtime.address,
                "error": None if reachable else self.runtime.last_error}

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)  # poll: TTLs are coarse, one check a second is plenty
            try:
                await self.remove_due(time.time())
            except Exception:  # never let one failure stop TTL and idle culling for good
                log.exception("removing expired or idle sandboxes failed")

    async def remove_due(self, now: float) -> dict[str, str]:
        """Delete the sandboxes past their TTL or idle too long (see ``sandbox.end_of_life``)."""
        due = [(s, reason) for s in list(self._sandboxes.values())
               if (reason := s.end_of_life(now, self.config.idle_timeout))]
        for sandbox, reason in due:
            log.info("sandbox %s %s", sandbox.id, reason)
            self._removed[sandbox.id] = (sandbox.tenant, reason)
            while len(self._removed) > MAX_REMEMBERED:
                self._removed.popitem(last=False)
            sandbox.mark_dead(f"{REMOVED}: {reason}")  # a waiting stream is told why
            with contextlib.suppress(BackendUnavailable):  # retried next second
                await self._remove(sandbox, reason)
        return {s.id: reason for s, reason in due}

    async def close(self) -> None:
        """Destroy every sandbox this gateway started; nothing is left behind.

        Only this graceful path destroys claimed sandboxes; a crash leaves them to be
        re-adopted by the next start (recovery.py).
        """
        if self._ttl_task is not None:
            self._ttl_task.cancel()
        claimed, self._sandboxes = list(self._sandboxes.values()), {}
        await asyncio.gather(*(self._destroy(s) for s in claimed), return_exceptions=True)
        await asyncio.gather(*(p.close() for p in self.pools.values()), return_exceptions=True)
        await self._reaper.close()
        await self.runtime.remove_all()
        self.kernels.remove_all_dirs()
        self.runtime.close()
        await asyncio.gather(*self._writes, return_exceptions=True)
        if self.store.is_open:
            await self.store.mark_all_deleted("the gateway shut down")
            await self.store.close()


def _sizing(template: TemplateConfig) -> ReadyTarget | None:
    """The claim-rate-following target, unless the template keeps a fixed ``min_ready``."""
    if not template.adaptive:
        return None
    return ReadyTarget(floor=template.min_ready, ceiling=template.max_total)


def message_limits(config: GatewayConfig) -> MessageLimits:
    return MessageLimits(config.max_kernel_message_bytes, config.max_kernel_messages_per_second,
                         config.max_kernel_bytes_per_second)


def _record(sandbox: Sandbox) -> SandboxRecord:
    return SandboxRecord(sandbox.id, sandbox.template, sandbox.handle.sandbox_id,
                         sandbox.handle.container_id, sandbox.tenant, sandbox.created_at,
                         sandbox.expires_at, sandbox.metadata, sandbox.env, sandbox.language_info)


async def _agent_ready(agent: AgentConnection | None, deadline: float) -> None:
    if agent is not None:
        await agent.wait_ready(deadline)
