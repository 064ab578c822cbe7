"""One sandbox: a container handle, a live kernel connection (one cell at a time), its agent."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from .agent import AgentConnection, agent_exit_reason
from .commands import CommandTable
from .config import DEFAULT_TENANT
from .errors import BadRequest, KernelDied
from .kernel import KernelConnection, KernelGone, PendingExecution
from .provisioner import ContainerHandle
from .wire import iso_time

log = logging.getLogger(__name__)

Event = dict[str, Any]
REMOVED = "removed by the gateway"  # death_reason prefix: TTL expiry or idle culling


@dataclasses.dataclass
class Sandbox:
    """A warm kernel container; claimed by one session, then destroyed, never reused.

    Example::

        async for event in sandbox.execute("1+1", timeout=5):
            print(event["msg_type"], event["content"])
    """

    handle: ContainerHandle
    kernel: KernelConnection
    interrupt_grace: float = 10.0
    created_at: float = dataclasses.field(default_factory=time.time)
    expires_at: float = 0.0
    last_active: float = dataclasses.field(default_factory=time.time)  # see touch()
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    dead: bool = False
    death_reason: str = ""
    public_id: str = ""  # set when a restart swaps in a new container under the old id
    language_info: dict[str, Any] = dataclasses.field(default_factory=dict)  # from kernel_info
    tenant: str = DEFAULT_TENANT  # the owner: only its tenant's requests find this sandbox
    agent: AgentConnection | None = None  # files and processes; None: a template without one
    commands: CommandTable = dataclasses.field(default_factory=CommandTable)  # through the agent
    _lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)

    @property
    def id(self) -> str:
        return self.public_id or self.handle.sandbox_id

    @property
    def template(self) -> str:
        return self.handle.template

    @property
    def state(self) -> str:
        if self.dead:
            return "dead"
        return "busy" if self._lock.locked() else "running"

    def touch(self) -> None:
        """A client used the sandbox (a request, or output streamed to it): not idle."""
        self.last_active = time.time()

    def end_of_life(self, now: float, idle_timeout: float) -> str | None:
        """Why the gateway should remove this sandbox at ``now``, or None to keep it."""
        return end_of_life(self.expires_at, self.last_active, now, idle_timeout)

    def mark_dead(self, reason: str = "its kernel stopped") -> None:
        if not self.dead:
            # the launcher ends the kernel when the agent dies: the agent's death is the news
            agent_reason = agent_exit_reason(self.handle.conn_dir) if self.agent else None
            self.death_reason = agent_reason or reason
        self.dead = True
        self.kernel.fail_pending(self.death_reason)

    async def apply_env(self, env: dict[str, str]) -> None:
        """Set ``os.environ`` in the kernel (the container was started before the claim)."""
        self.env = dict(env)
        if not env:
            return
        code = f"import os as _o; _o.environ.update({json.dumps(env)}); del _o"
        async for event in self.execute(code, silent=True):
            if event["msg_type"] == "gateway_error":
                raise KernelDied(event["content"]["message"])

    async def execute(self, code: str, *, timeout: float | None = None,
                      silent: bool = False) -> AsyncGenerator[Event, None]:
        """Yield numbered events for one cell; see docs/api.md for their shapes.

        If the consumer stops early (client went away), the cell is interrupted and drained in
        the background so the next execution starts on an idle kernel.
        """
        self._check_alive()
        await self._lock.acquire()
        pending = None
        try:
            pending = await self.kernel.execute(code, silent=silent)
            seq = 0
            async for event in self._events(pending, timeout):
                yield {"seq": seq, **event}
                seq += 1
        finally:
            if pending is None or pending.done or self.dead:
                self._finish(pending)
            else:
                asyncio.ensure_future(self._drain(pending))

    async def _events(self, pending: PendingExecution, timeout: float | None
                      ) -> AsyncIterator[Event]:
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        interrupted = False
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    msg = await pending.next()
            except KernelGone:
                self.mark_dead()
                code = "sandbox_removed" if self.death_reason.startswith(REMOVED) else "kernel_died"
                yield _event("gateway_error", {"code": code, "message": self._obituary()})
                return
            except TimeoutError:
                if interrupted:
                    yield _event("gateway_error", {"code": "kernel_unresponsive",
                                                   "message": "the kernel ignored the interrupt"})
                    return
                yield _event("timeout", {"timeout": timeout})
                await self._interrupt_quietly()
                interrupted = True
                deadline = asyncio.get_running_loop().time() + self.interrupt_grace
                continue
            if msg is None:
                return
            yield _event(msg["msg_type"], _public_content(msg))

    async def _interrupt_quietly(self) -> None:
        with contextlib.suppress(TimeoutError, KernelGone):
            await self.kernel.interrupt(timeout=self.interrupt_grace)

    async def _drain(self, pending: PendingExecution) -> None:
        try:
            await self._interrupt_quietly()
            async with asyncio.timeout(self.interrupt_grace):
                while await pending.next() is not None:
                    pass
        except (TimeoutError, KernelGone):
            log.warning("sandbox %s did not finish after its client left", self.id)
        finally:
            self._finish(pending)

    def _finish(self, pending: PendingExecution | None) -> None:
        if pending is not None:
            pending.close()
        self._lock.release()

    def require_agent(self) -> AgentConnection:
        """The live sandbox's agent (files, commands), or the error that says why not."""
        self._check_alive()
        if self.agent is None:
            raise BadRequest(f"sandbox {self.id}'s template {self.template!r} runs no agent, "
                             "which files and commands need: set agent = true in "
                             f"[templates.{self.template}]", code="no_agent")
        self.touch()
        return self.agent

    def _check_alive(self) -> None:
        if self.dead:
            raise KernelDied(self._obituary())

    def _obituary(self) -> str:
        if self.death_reason.startswith(REMOVED):
            return f"sandbox {self.id} was {self.death_reason}"
        return (f"sandbox {self.id} died ({self.death_reason or 'its kernel stopped'}); "
                "restart it (POST .../restart) or delete it")

    async def interrupt(self) -> None:
        self._check_alive()
        try:
            await self.kernel.interrupt(timeout=self.interrupt_grace)
        except (TimeoutError, KernelGone) as exc:
            raise KernelDied(f"sandbox {self.id}'s kernel did not answer the interrupt") from exc

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "template": self.template, "state": self.state,
                "created_at": iso_time(self.created_at), "expires_at": iso_time(self.expires_at),
                "metadata": self.metadata}


def end_of_life(expires_at: float, last_active: float, now: float,
                idle_timeout: float) -> str | None:
    """The removal policy: past its time to live, or idle for ``idle_timeout`` (0: never).

    Idle means no client activity (see :meth:`Sandbox.touch`), whether or not the kernel is
    busy: a cell stuck in ``time.sleep(10**6)`` with nobody asking about it is culled too.
    """
    if expires_at <= now:
        return "expired: its time to live ran out"
    if idle_timeout and now - last_active >= idle_timeout:
        return f"culled: idle for {now - last_active:.0f}s (idle_timeout is {idle_timeout:g}s)"
    return None


def _event(msg_type: str, content: dict[str, Any]) -> Event:
    return {"msg_type": msg_type, "content": content}


def _public_content(msg: dict[str, Any]) -> dict[str, Any]:
    content: dict[str, Any] = msg["content"]
    if msg["msg_type"] == "execute_reply":  # the error itself already went out as an event
        return {"status": content.get("status"), "execution_count": content.get("execution_count")}
    return content


