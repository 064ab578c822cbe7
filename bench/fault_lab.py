"""The harness of ``python -m bench.faults``: one real gateway (its Docker socket behind a
:class:`SocketProxy`, so a row can cut Docker off), an attacker session per row, and a
bystander session that keeps running ``1+1`` while an attack is on.

Each row is a plain function ``(Lab) -> Observed``; :func:`measure` turns it into a
:class:`Row` with the bystander's numbers. Example::

    from bench.faults import FAULTS
    with Lab.open(Path("/tmp/faults")) as lab:
        print(table([measure(fault, lab) for fault in FAULTS[:2]]))
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import secrets
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

import sandcell
from sandcell_gateway.testing import GatewayProcess, SocketProxy, wait_for

from .footprint import gateway_rss

CONFIG = """
[gateway]
gateway_id = "{gateway_id}"
docker_host = "unix://{proxy}"
sandbox_ttl = 600
claim_timeout = 20

[templates.python]
min_ready = 2
max_total = 12              # the hostile-kernel rows run 8 attackers beside the bystander

[plugins]
enabled = false

[tenants.greedy]            # the rate-limit row's attacker: a tenant of its own, throttled
token_sha256 = "{greedy_sha256}"
execute_rate = 2.0
execute_burst = 3
"""
GREEDY_TOKEN = secrets.token_urlsafe(24)
MIN_SAMPLES = 5  # bystander 1+1s per attack, at least (a short attack waits for them)
PACE = 0.05  # seconds between two bystander 1+1s: it measures, it does not add load
RSS_EVERY = 0.02  # seconds between two samples of the gateway's resident set
RECOVERY_TIMEOUT = 120.0
# what "an attempt that did not work yet" raises while a recovery is polled
NOT_YET = (sandcell.SandcellError, httpx.HTTPError)


@dataclasses.dataclass(frozen=True)
class Recovery:
    """How long after the attack's end (or its detection) ``normal`` held again."""

    normal: str
    seconds: float


@dataclasses.dataclass(frozen=True)
class Observed:
    """What the attacker's side saw, and the recoveries the row measured."""

    outcome: str
    recoveries: list[Recovery] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Watch:
    """The bystander's 1+1 latencies (seconds) during one attack, and what went wrong."""

    latencies: list[float] = dataclasses.field(default_factory=list)
    failures: list[str] = dataclasses.field(default_factory=list)
    peak_rss_mib: float = 0.0  # the gateway's, sampled every RSS_EVERY while the attack ran

    @property
    def count(self) -> int:
        return len(self.latencies) + len(self.failures)


@dataclasses.dataclass(frozen=True)
class Fault:
    """One row of the table: ``run`` performs the attack against ``lab`` and says what it saw."""

    key: str
    name: str
    run: Callable[[Lab], Observed]


@dataclasses.dataclass
class Row:
    """A measured row; ``bystander_ms`` is None where no bystander could run (gateway down)."""

    fault: str
    outcome: str
    recoveries: list[Recovery]
    bystander_ms: float | None
    bystander_n: int
    bystander_ok: bool
    bystander_p99_ms: float | None = None
    peak_rss_mib: float | None = None  # the gateway's during the attack

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def recovered(normal: str, since: float, check: Callable[[], object],
              timeout: float = RECOVERY_TIMEOUT) -> Recovery:
    """Poll ``check`` until it is truthy (an SDK or HTTP error counts as "not yet"); the
    time from ``since`` (a ``time.monotonic()``) is the time to recover."""
    def attempt() -> object:
        try:
            return check()
        except NOT_YET:
            return False

    wait_for(attempt, timeout, normal)
    return Recovery(normal, time.monotonic() - since)


def answers(session: sandcell.Session, code: str = "1+1", text: str = "2") -> bool:
    return session.execute(code, timeout=30).text == text


class Bystander:
    """A session of its own that must stay healthy whatever the attacker does."""

    def __init__(self, gw: GatewayProcess) -> None:
        self.client = sandcell.Client(base_url=gw.url, token=gw.token, timeout=60)
        self.session = self.client.sessions.create()
        self.session.execute("canary = 'alive'")

    def reconnect(self, gw: GatewayProcess) -> None:
        """After a gateway restart (a new port): the same sandbox through a new client."""
        self.client.close()
        self.client = sandcell.Client(base_url=gw.url, token=gw.token, timeout=60)
        self.session = self.client.sessions.get(self.session.id)

    def alive(self) -> bool:
        """Its kernel still holds the state it was given before all attacks."""
        try:
            return answers(self.session, "canary", "'alive'")
        except NOT_YET:
            return False

    @contextlib.contextmanager
    def watching(self) -> Iterator[Watch]:
        """Run 1+1 over and over in a thread while the block runs (at least MIN_SAMPLES)."""
        watch, stop = Watch(), threading.Event()
        thread = threading.Thread(target=self._sample, args=(watch, stop), daemon=True)
        thread.start()
        try:
            yield watch
        finally:
            stop.set()
            thread.join(timeout=RECOVERY_TIMEOUT)

    def _sample(self, watch: Watch, stop: threading.Event) -> None:
        while watch.count < MIN_SAMPLES or not stop.is_set():
            started = time.perf_counter()
            try:
                text = self.session.execute("1+1", timeout=30).text
            except NOT_YET as exc:
                watch.failures.append(f"{type(exc).__name__}: {exc}")
            else:
                if text == "2":
                    watch.latencies.append(time.perf_counter() - started)
                else:
                    watch.failures.append(f"1+1 gave {text!r}")
            stop.wait(PACE)

    def close(self) -> None:
        with contextlib.suppress(*NOT_YET):
            self.session.close()
        self.client.close()


class Lab:
    """The gateway, its Docker proxy, an SDK client and the bystander, shared by all rows."""

    def __init__(self, gw: GatewayProcess, proxy: SocketProxy) -> None:
        self.gw = gw
        self.proxy = proxy
        self.client = sandcell.Client(base_url=gw.url, token=gw.token, timeout=60)
        self.bystander = Bystander(gw)
        self.watch: Watch | None = None

    @classmethod
    @contextlib.contextmanager
    def open(cls, workdir: Path) -> Iterator[Lab]:
        proxy = SocketProxy(workdir / "docker.sock")
        proxy.start()
        config = CONFIG.replace("{proxy}", str(proxy.path)).replace(
            "{greedy_sha256}", hashlib.sha256(GREEDY_TOKEN.encode()).hexdigest())
        gw = GatewayProcess(workdir, config)
        try:
            gw.start().wait_ready()
            lab = cls(gw, proxy)
            try:
                yield lab
            finally:
                lab.close()
        finally:
            if gw.process is not None:
                gw.stop()

    @contextlib.contextmanager
    def attacker(self) -> Iterator[sandcell.Session]:
        """A fresh session for one attack, claimed before it starts: the pool's refill is
        over before the attack, so the bystander measures the attack and not a container
        start."""
        with self.client.sessions.create() as session:
            self.gw.wait_ready()
            yield session

    def client_of(self, token: str) -> sandcell.Client:
        """An SDK client of another tenant (e.g. ``GREEDY_TOKEN``)."""
        return sandcell.Client(base_url=self.gw.url, token=token, timeout=60)

    @contextlib.contextmanager
    def attack(self) -> Iterator[Watch]:
        """The attack is on inside this block: the bystander samples 1+1 meanwhile, and the
        gateway's RSS is sampled for the row's peak."""
        stop = threading.Event()
        with self.bystander.watching() as watch:
            self.watch = watch
            sampler = threading.Thread(target=self._sample_rss, args=(watch, stop), daemon=True)
            sampler.start()
            try:
                yield watch
            finally:
                stop.set()
                sampler.join()

    def _sample_rss(self, watch: Watch, stop: threading.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError, AssertionError):  # the gateway-kill row
                watch.peak_rss_mib = max(watch.peak_rss_mib, gateway_rss(self.gw))
            stop.wait(RSS_EVERY)

    def reconnect(self) -> None:
        """After the gateway restarted on a new port."""
        self.client.close()
        self.client = sandcell.Client(base_url=self.gw.url, token=self.gw.token, timeout=60)
        self.bystander.reconnect(self.gw)

    def pool_full(self) -> bool:
        pool = self.gw.health()["pools"]["python"]
        return bool(pool["ready"] >= pool["min_ready"])

    def close(self) -> None:
        self.bystander.close()
        self.client.close()


def measure(fault: Fault, lab: Lab) -> Row:
    """Run one fault; a row that breaks is reported as such and the next rows still run."""
    lab.watch = None
    try:
        lab.gw.wait_ready()  # every attack starts from a full pool
        observed = fault.run(lab)
    except Exception as exc:  # the table says which row broke and why
        observed = Observed(f"bench error: {type(exc).__name__}: {exc}")
    watch = lab.watch
    latencies: list[float] = watch.latencies if watch else []
    return Row(fault=fault.name, outcome=observed.outcome, recoveries=observed.recoveries,
               bystander_ms=statistics.median(latencies) * 1000 if latencies else None,
               bystander_n=watch.count if watch else 0,
               bystander_ok=lab.bystander.alive() and not (watch and watch.failures),
               bystander_p99_ms=p99(latencies) * 1000 if latencies else None,
               peak_rss_mib=watch.peak_rss_mib or None if watch else None)


def p99(values: list[float]) -> float:
    """The 99th percentile (nearest rank): of fewer than 100 values, the largest.

    >>> p99([float(i) for i in range(1, 201)])
    198.0
    """
    ranked = sorted(values)
    return ranked[max(0, -(-len(ranked) * 99 // 100) - 1)]


def table(rows: list[Row]) -> str:
    """Markdown: one line per recovery (a row's first line carries the fault)."""
    lines = ["| fault | observed outcome | bystander 1+1 during (median / p99, n) "
             "| bystander ok | gateway peak RSS | back to normal means | time to recover |",
             "|---|---|---:|---|---:|---|---:|"]
    for row in rows:
        p99 = f" / {row.bystander_p99_ms:.1f}" if row.bystander_p99_ms is not None else ""
        bystander = (f"{row.bystander_ms:.1f}{p99} ms (n={row.bystander_n})"
                     if row.bystander_ms is not None else f"- (n={row.bystander_n})")
        rss = f"{row.peak_rss_mib:.0f} MiB" if row.peak_rss_mib else "-"
        first = (f"| {_cell(row.fault)} | {_cell(row.outcome)} | {bystander} | "
                 f"{'yes' if row.bystander_ok else 'NO'} | {rss}")
        for i, rec in enumerate(row.recoveries or [Recovery("-", float("nan"))]):
            head = first if i == 0 else "| | | | |"  # " | " follows: five empty cells
            took = f"{rec.seconds:.2f} s" if rec.seconds == rec.seconds else "-"
            lines.append(f"{head} | {_cell(rec.normal)} | {took} |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")
