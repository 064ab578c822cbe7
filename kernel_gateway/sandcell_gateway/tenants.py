"""Tenants: who a token belongs to, and the caps and rates that keep one tenant from starving
the others. No HTTP in here; the handlers authenticate with :class:`Tenants` and the services
call :func:`check_caps` and :meth:`Tenant.admit_create` / :meth:`Tenant.admit_execute`.

Tokens are known only by their sha256 (the config file holds hashes, never tokens), and every
tenant's hash is compared on every request, in constant time, so the answer's timing says
nothing about which token came close.

Example::

    tenants = Tenants({"default": TenantConfig("default")}, default_token="s3cret")
    tenant = tenants.authenticate("s3cret")
    tenant.admit_execute()          # raises TooManyRequests past the execute rate
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping

from .config import DEFAULT_TENANT, ConfigError, TenantConfig
from .errors import TooManyRequests

# Only ever an annotation (postponed by the __future__ import), so no test can see its value.
Clock = Callable[[], float]  # pragma: no mutate
# A cap frees when one of the tenant's sandboxes is deleted or expires; no clock predicts that,
# so Retry-After is a polling hint.
CAP_RETRY_AFTER = 5


def hash_token(token: str) -> str:
    """The ``token_sha256`` line's value for ``token``.

    >>> hash_token("test")
    '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'
    """
    return hashlib.sha256(token.encode()).hexdigest()


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; each request takes one.

    A refused request takes nothing, and learns how long until a token is there.

    >>> now = [0.0]
    >>> bucket = TokenBucket(rate=2.0, burst=1, clock=lambda: now[0])
    >>> bucket.take(), bucket.take()
    (0.0, 0.5)
    >>> now[0] = 0.5
    >>> bucket.take()
    0.0
    """

    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def take(self) -> float:
        """Take a token and return 0.0, or take none and return the seconds until one."""
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate

    def spend(self, cost: float) -> None:
        """Take ``cost`` tokens even if that leaves a debt (a cost known only afterwards,
        such as the bytes a kernel just sent); :meth:`debt` says how long it lasts.

        >>> now = [0.0]
        >>> bucket = TokenBucket(rate=10.0, burst=10, clock=lambda: now[0])
        >>> bucket.spend(30); bucket.debt()
        2.0
        >>> now[0] = 2.0
        >>> bucket.debt()
        0.0
        """
        self._refill()
        self._tokens -= cost

    def debt(self) -> float:
        """Seconds until the bucket is out of debt (0.0 if it is not in debt)."""
        self._refill()
        return max(0.0, -self._tokens / self.rate)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now


@dataclasses.dataclass
class Tenant:
    """One authenticated caller's identity and its rate buckets."""

    config: TenantConfig
    creates: TokenBucket
    executes: TokenBucket

    @classmethod
    def from_config(cls, config: TenantConfig, clock: Clock = time.monotonic) -> Tenant:
        return cls(config, TokenBucket(config.create_rate, config.create_burst, clock),
                   TokenBucket(config.execute_rate, config.execute_burst, clock))

    @property
    def name(self) -> str:
        return self.config.name

    def admit_create(self) -> None:
        """Spend one sandbox creation, or raise 429 ``rate_limited`` spending nothing."""
        _admit(self.creates, f"tenant {self.name!r} may create {self.config.create_rate:g} "
                             f"sandboxes per second (create_rate; create_burst "
                             f"{self.config.create_burst})")

    def admit_execute(self) -> None:
        """Spend one execution, command, file call or plugin invocation, or raise 429
        ``rate_limited``."""
        _admit(self.executes, f"tenant {self.name!r} may run {self.config.execute_rate:g} "
                              f"executions, commands, file calls or plugin invocations per "
                              f"second (execute_rate; execute_burst {self.config.execute_burst})")


def _admit(bucket: TokenBucket, limit: str) -> None:
    wait = bucket.take()
    if wait:
        raise TooManyRequests(f"{limit}; retry after {wait:.2f} s, or ask the gateway's "
                              "operator to raise the limit", retry_after=wait)


def check_caps(tenant: Tenant, owned: int, total: int, gateway_max: int) -> None:
    """Refuse one more sandbox past the tenant's or the gateway's cap (429, nothing claimed).

    ``owned`` and ``total`` count claimed sandboxes plus claims in flight.
    """
    if owned >= tenant.config.max_sandboxes:
        raise TooManyRequests(
            f"tenant {tenant.name!r} has {owned} sandbox(es), its max_sandboxes is "
            f"{tenant.config.max_sandboxes}; delete one first", code="tenant_sandbox_limit",
            retry_after=CAP_RETRY_AFTER)
    if total >= gateway_max:
        raise TooManyRequests(
            f"the gateway holds {total} sandbox(es), its max_sandboxes is {gateway_max}; "
            "retry later", code="gateway_sandbox_limit", retry_after=CAP_RETRY_AFTER)


class Tenants:
    """Every tenant of the gateway, found by token. ``default`` holds ``default_token``."""

    def __init__(self, configs: Mapping[str, TenantConfig], default_token: str,
                 clock: Clock = time.monotonic) -> None:
        self._by_name = {name: Tenant.from_config(c, clock) for name, c in configs.items()}
        if DEFAULT_TENANT not in self._by_name:
            self._by_name[DEFAULT_TENANT] = Tenant.from_config(TenantConfig(DEFAULT_TENANT), clock)
        self._hashes = [((t.config.token_sha256 or hash_token(default_token)).encode(), t)
                        for t in self._by_name.values()]
        default_hash = hash_token(default_token)
        for tenant in self._by_name.values():
            if tenant.config.token_sha256 == default_hash:
                raise ConfigError(f"SANDCELL_TOKEN is also [tenants.{tenant.name}]'s token; "
                                  "give the default tenant its own token")

    def authenticate(self, token: str) -> Tenant | None:
        """The tenant whose token this is, or None. Compares with every tenant's hash."""
        if not token:
            return None
        digest, found = hash_token(token).encode(), None
        for known, tenant in self._hashes:
            if hmac.compare_digest(digest, known) and found is None:
                found = tenant
        return found

    def __getitem__(self, name: str) -> Tenant:
        return self._by_name[name]
