"""Re-adopt the sandboxes a crashed run of this gateway left, and reap everything else.

A gateway killed without its shutdown (``kill -9``, OOM, a power cut) leaves its containers
running: each kernel keeps its state behind the ipc sockets in its connection directory, and
the store still holds the sandbox's record. Starting again with the same ``gateway_id``,
``state_dir`` and store, :class:`Recovery` reconnects to every recorded sandbox whose
container still runs and whose kernel answers, and reaps the rest: records whose container is
gone or silent are marked deleted with the reason (their history stays exportable), and every
other container carrying this gateway's label (old warm-pool members, orphans) is removed.

Example::

    kernels = KernelProvisioner(config, runtime)
    adopted, report = await Recovery(config, runtime, kernels, store).run()
    log.info("%s", report)
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable

from .agent import AgentConnection, AgentNotReady
from .config import GatewayConfig
from .containers import ContainerInfo, ContainerRuntime
from .kernel import KernelConnection, KernelGone
from .provisioner import ContainerHandle, KernelProvisioner
from .sandbox import Sandbox
from .store import HistoryStore, SandboxRecord

log = logging.getLogger(__name__)

# A live kernel answers in milliseconds; one that has not answered in this long is reaped
# rather than holding up the gateway's start.
ADOPT_TIMEOUT = 10.0


@dataclasses.dataclass
class RecoveryReport:
    """What a start found: sandboxes adopted, records reaped, stray containers removed."""

    adopted: int = 0
    reaped: int = 0
    removed_containers: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        return (f"re-adopted {self.adopted} sandbox(es), reaped {self.reaped} dead one(s), "
                f"removed {self.removed_containers} other container(s) in {self.seconds:.2f} s")


class Recovery:
    """One pass over the store's live records and this gateway's containers; see the module."""

    def __init__(self, config: GatewayConfig, runtime: ContainerRuntime,
                 kernels: KernelProvisioner, store: HistoryStore,
                 adopt_timeout: float = ADOPT_TIMEOUT,
                 connect: Callable[[ContainerHandle], KernelConnection] | None = None) -> None:
        self.config = config
        self.runtime = runtime  # lists and removes containers; ``kernels`` reattaches them
        self.kernels = kernels
        self.store = store
        self.adopt_timeout = adopt_timeout
        # the service's (through its guard); a bare connection by default
        self._connect = connect or (lambda handle: KernelConnection(
            handle.connection, output_limit=config.max_output_bytes))

    async def run(self) -> tuple[list[Sandbox], RecoveryReport]:
        started = time.monotonic()
        records = await self.store.live_sandboxes()
        containers = await self.runtime.containers()
        running = {c.id: c for c in containers if c.running}
        # concurrently: a start waits for the slowest check, not for the sum of them
        results = await asyncio.gather(*(self._adopt(r, running.get(r.container_id))
                                         for r in records))
        adopted = [s for s in results if s is not None]
        kept = {s.handle.container_id for s in adopted}
        strays = [c.id for c in containers if c.id not in kept]
        await asyncio.gather(*(self.runtime.remove(c) for c in strays))
        self.kernels.remove_dirs_except({s.handle.sandbox_id for s in adopted})
        return adopted, RecoveryReport(len(adopted), len(records) - len(adopted), len(strays),
                                       time.monotonic() - started)

    async def _adopt(self, record: SandboxRecord, container: ContainerInfo | None
                     ) -> Sandbox | None:
        reason = self._unadoptable(record, container)
        if reason is None:
            try:
                handle = self.kernels.reattach(record.container_id, record.instance_id,
                                               record.template)
            except (OSError, ValueError):
                reason = "its connection directory was gone when the gateway restarted"
            else:
                sandbox = await self._reconnect(record, handle)
                if sandbox is not None:
                    return sandbox
                reason = f"its kernel did not answer within {self.adopt_timeout:g}s " \
                         "after the gateway restarted"
        log.info("sandbox %s not re-adopted: %s", record.id, reason)
        await self.store.mark_deleted(record.id, reason)
        return None

    def _unadoptable(self, record: SandboxRecord, container: ContainerInfo | None) -> str | None:
        if record.template not in self.config.templates:
            return f"its template {record.template!r} is no longer configured"
        if container is None:
            return "its container was gone or stopped when the gateway restarted"
        if container.instance_id != record.instance_id:
            return "its container id now names another sandbox"
        return None

    async def _reconnect(self, record: SandboxRecord, handle: ContainerHandle) -> Sandbox | None:
        """Prove the kernel answers without restarting it: its variables are the point."""
        kernel = self._connect(handle)
        try:
            async with asyncio.timeout(self.adopt_timeout):
                # a cell running at the crash lost its client: interrupt it, as when a client
                # leaves (and shell's kernel_info would otherwise wait behind it)
                await kernel.interrupt(timeout=self.adopt_timeout)
                info = await kernel.wait_ready(self.adopt_timeout)
                agent = await self._agent(handle)
        except (TimeoutError, KernelGone, AgentNotReady):
            kernel.close()
            return None
        return Sandbox(handle, kernel, interrupt_grace=self.config.interrupt_grace,
                       created_at=record.created_at, expires_at=record.expires_at,
                       metadata=record.metadata, env=record.env,
                       public_id=record.id if record.id != record.instance_id else "",
                       language_info=dict(info.get("language_info") or record.language_info),
                       tenant=record.tenant, agent=agent)

    async def _agent(self, handle: ContainerHandle) -> AgentConnection | None:
        """The sandbox's agent, proven to answer (its files and processes are the point too)."""
        if not self.config.templates[handle.template].agent:
            return None
        agent = AgentConnection(handle.conn_dir)
        try:
            await agent.wait_ready(self.adopt_timeout)
        except BaseException:
            agent.close()
            raise
        return agent
