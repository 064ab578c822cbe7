"""Gateway configuration: defaults, overridden by a TOML file, overridden by CLI flags.

Example ``sandcell.toml``::

    [gateway]
    port = 8765
    sandbox_ttl = 3600       # seconds a claimed sandbox lives at most (a request may ask less)
    docker_host = "unix:///var/run/docker.sock"   # default: $DOCKER_HOST, else Docker's socket
    idle_timeout = 1800      # seconds without a client request before a sandbox is culled; 0: never
    max_body_size = 1048576  # bytes of a request body; larger bodies get 413 body_too_large
    websocket_max_message_size = 10485760  # bytes of one Jupyter WebSocket message; closes 1009
    max_sandboxes = 64       # claimed sandboxes, all tenants together
    max_kernel_message_bytes = 67108864  # one kernel message; over it the sandbox is killed
    max_kernel_messages_per_second = 200.0  # per sandbox; past it the gateway reads slower
    max_kernel_bytes_per_second = 67108864   # per sandbox, likewise

    [gateway.cors]           # browser pages on these origins may call the gateway (off by default)
    allow_origin = ["https://app.example.com", "http://localhost:3000"]

    [gateway.e2b]            # E2B's own SDK against /e2b/api and /e2b/sbx (docs/e2b.md); on by default
    enabled = true
    aliases = { base = "python", "code-interpreter-v1" = "python" }  # E2B template -> Sandcell

    [templates.python]
    min_ready = 2
    max_total = 16

    [templates.python.limits]
    memory = "1g"
    network = "none"

    [plugins]
    dir = "plugins"          # a directory of plugin directories, each with a plugin.json
    min_ready = 1            # warm workers kept per plugin
    max_worker_message_bytes = 4194304  # one gRPC message from a worker; over it the call fails
    max_output_bytes = 67108864         # one call's output, all result chunks together
    max_events_per_second = 50.0        # progress + log events per call; past it dropped

    [tenants.alice]          # one table per tenant; its token is stored hashed only
    token_sha256 = "9f86d0..."   # `sandcell tenants hash-token` (token on stdin)
    max_sandboxes = 4        # claimed sandboxes at once
    create_rate = 2.0        # sandbox creations per second (token bucket refill)
    create_burst = 5         # creations allowed at once after a quiet spell
    execute_rate = 20.0      # executions + plugin invocations per second
    execute_burst = 40

    [tenants.default]        # the SANDCELL_TOKEN tenant: limits only, no token_sha256

Every tenant limit has a default (see :class:`TenantConfig`); ``[gateway] max_sandboxes`` caps
the claimed sandboxes of all tenants together.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .pool_sizing import parse_size

DEFAULT_PORT = 8765
DEFAULT_IMAGE = "sandcell/python:latest"


class ConfigError(ValueError):
    """The configuration file or a flag has a value the gateway cannot use."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """Hardening and resource limits for one template's containers.

    Every field is a safe default; a template loosens one only by saying so.
    """

    memory: str = "1g"
    cpus: float = 1.0
    pids: int = 256
    tmp_size: str = "256m"
    workspace_size: str = "512m"
    network: str = "none"
    read_only: bool = True
    log_max_size: str = "1m"


@dataclasses.dataclass(frozen=True)
class TemplateConfig:
    """One kind of sandbox: an image plus pool sizes and limits."""

    name: str
    image: str = DEFAULT_IMAGE
    min_ready: int = 2
    max_total: int = 16
    claim_timeout: float | None = None  # None: the gateway's claim_timeout
    limits: Limits = Limits()
    # ready sandboxes follow the claim rate between min_ready and max_total (pool_sizing.py);
    # false: always exactly min_ready
    adaptive: bool = True
    ready_memory: str = "64m"  # what one warm idle sandbox holds, against pool_memory_budget
    runtime: str = ""  # OCI runtime Docker runs the containers with ("crun"); "": the daemon's
    # run the sandbox agent (files, commands) beside the kernel, and wait for it at readiness;
    # false saves its start, ~60 ms of CPU per sandbox (docs/sandbox-cost.md)
    agent: bool = True

    def __post_init__(self) -> None:
        if self.min_ready < 0 or self.max_total < 1 or self.min_ready > self.max_total:
            raise ConfigError(
                f"template {self.name!r}: need 0 <= min_ready <= max_total and max_total >= 1, "
                f"got min_ready={self.min_ready}, max_total={self.max_total}"
            )
        _size(self.ready_memory, f"[templates.{self.name}] ready_memory")


def default_plugins_dir() -> Path:
    """The seed plugins this package carries (package data; in a source checkout a symlink
    to the top-level ``plugins/``)."""
    return Path(__file__).resolve().parent / "seed_plugins"


MIN_WORKER_MESSAGE = 2 * 1024 * 1024  # a 1 MiB result chunk and its framing, with room
MAX_GRPC_MESSAGE = 2**31 - 1


def _whole(where: str, value: Any, low: int, high: int | None, why: str) -> None:
    """A byte count: a whole number in [low, high] (high None: no upper bound)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low \
            or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ConfigError(f"{where} must be a whole number of bytes {bound}"
                          f"{f' ({why})' if why else ''}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class PluginsConfig:
    """The plugin runtime: where manifests are found and how many warm workers to keep.

    ``dir`` holds one directory per plugin (``plugin.json`` + code); ``paths`` adds single
    plugin directories from elsewhere. Workers get ``limits`` (the sandboxes' hardening).
    """

    enabled: bool = True
    dir: Path = dataclasses.field(default_factory=default_plugins_dir)
    paths: tuple[Path, ...] = ()
    min_ready: int = 1
    max_total: int = 8
    claim_timeout: float = 30.0
    invoke_timeout: float = 60.0  # per call, unless the manifest or the request says less
    limits: Limits = Limits(memory="256m", pids=64, tmp_size="64m", workspace_size="64m")
    # A worker runs the plugin's code, so what it sends is untrusted (docs/plugins.md):
    # one gRPC message from it (the gateway channel's receive limit; over it the call fails
    # ``message_too_large``). The Python kit sends outputs in 1 MiB chunks.
    max_worker_message_bytes: int = 4 * 1024 * 1024
    # all of one call's result chunks together; over it the call fails ``output_too_large``
    max_output_bytes: int = 64 * 1024 * 1024
    # progress and log events of one call, per second (bursts of two seconds' worth); the
    # rest of a flood is dropped: they are advice, and each one costs every client a message
    max_events_per_second: float = 50.0

    def __post_init__(self) -> None:
        if self.min_ready < 0 or self.max_total < 1 or self.min_ready > self.max_total:
            raise ConfigError("[plugins]: need 0 <= min_ready <= max_total and max_total >= 1")
        _whole("[plugins] max_worker_message_bytes", self.max_worker_message_bytes,
               MIN_WORKER_MESSAGE, MAX_GRPC_MESSAGE,
               "the Python kit sends outputs in 1 MiB chunks; gRPC's limit is an int32")
        _whole("[plugins] max_output_bytes", self.max_output_bytes, 1, None, "")
        rate = self.max_events_per_second
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < math.inf:
            raise ConfigError("[plugins] max_events_per_second must be a finite number > 0 "
                              f"(progress and log events per second of one call), got {rate!r}")

    @property
    def events_burst(self) -> int:
        """Progress and log events a call may send at once: two seconds' worth."""
        return max(1, int(2 * self.max_events_per_second))


_ORIGIN = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#@\s]+$")  # scheme://host[:port], no path
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an RFC 9110 token
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_CORS = "[gateway.cors]"
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def _as_origin(text: str) -> str:
    """An origin as a browser serialises it (lower case, no default port, no ``/``), so the
    configured one compares equal to the ``Origin`` header."""
    origin = text.strip().lower().rstrip("/")
    port = _DEFAULT_PORTS.get(origin.partition("://")[0], "")
    return origin[:-len(port)] if port and origin.endswith(port) else origin


@dataclasses.dataclass(frozen=True)
class CorsConfig:
    """``[gateway.cors]``: which browser origins may read the gateway's answers.

    The six keys are Jupyter Kernel Gateway's. CORS is off until ``allow_origin`` names an
    origin; ``"*"`` (any origin) must be asked for. An empty ``allow_methods`` means each
    route's own methods. :func:`load_config` also takes a single string for the lists.

    >>> CorsConfig(allow_origin=("https://App.example.com:443/", "*")).allow_origin
    ('https://app.example.com', '*')
    """

    allow_origin: tuple[str, ...] = ()
    allow_credentials: bool = False
    allow_headers: tuple[str, ...] = ("Authorization", "Content-Type")
    allow_methods: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ("Content-Disposition", "Location", "Retry-After",
                                       "X-Request-Id")
    max_age: int = 600  # seconds a browser may cache a preflight answer

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow_origin", tuple(map(_as_origin, self.allow_origin)))
        object.__setattr__(self, "allow_methods", tuple(m.upper() for m in self.allow_methods))
        self._check()

    def _check(self) -> None:
        for origin in self.allow_origin:
            if origin != "*" and not _ORIGIN.match(origin):
                raise ConfigError(f"{_CORS} allow_origin: {origin!r} is not an origin; write "
                                  "scheme://host[:port] as the browser sends it, e.g. "
                                  "'https://app.example.com' (no path), or '*' for any")
        if "*" in self.allow_origin and self.allow_credentials:
            raise ConfigError(f"{_CORS}: browsers refuse credentials with allow_origin '*'; "
                              "list the origins, or set allow_credentials = false")
        self._check_names()
        if isinstance(self.max_age, bool) or not isinstance(self.max_age, int) \
                or self.max_age < 0:
            raise ConfigError(f"{_CORS} max_age must be a whole number of seconds >= 0, "
                              f"got {self.max_age!r}")
        if not isinstance(self.allow_credentials, bool):
            raise ConfigError(f"{_CORS} allow_credentials must be true or false, "
                              f"got {self.allow_credentials!r}")

    def _check_names(self) -> None:
        for key in ("allow_headers", "expose_headers"):
            bad = [h for h in getattr(self, key) if not _HEADER_NAME.match(h)]
            if bad:
                raise ConfigError(f"{_CORS} {key}: {bad[0]!r} is not a header name")
        bad = [m for m in self.allow_methods if m not in _METHODS]
        if bad:
            raise ConfigError(f"{_CORS} allow_methods: {bad[0]!r} is not one of "
                              f"{', '.join(_METHODS)}")


@dataclasses.dataclass(frozen=True)
class E2BConfig:
    """``[gateway.e2b]``: the E2B-compatible surface (docs/e2b.md).

    ``aliases`` maps an E2B template id to a Sandcell template; an id it does not name is
    taken as a Sandcell template's own name. The surface needs the template's agent (files,
    commands): a template without it answers those calls ``failed_precondition``.

    >>> E2BConfig().template("code-interpreter-v1"), E2BConfig().template("tiny")
    ('python', 'tiny')
    """

    enabled: bool = True
    aliases: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: {"base": "python", "code-interpreter-v1": "python"})

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"[gateway.e2b] enabled must be true or false, got {self.enabled!r}")
        if not isinstance(self.aliases, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.aliases.items()):
            raise ConfigError("[gateway.e2b] aliases must map E2B template ids to Sandcell "
                              "template names (strings)")

    def template(self, e2b_template: str) -> str:
        return self.aliases.get(e2b_template, e2b_template)


DEFAULT_TENANT = "default"
_TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclasses.dataclass(frozen=True)
class TenantConfig:
    """Who may call the gateway, and how much: one token (stored as its sha256) and limits.

    The defaults suit one person working locally (the ``default`` tenant, whose token is
    ``SANDCELL_TOKEN``); tighten them per tenant when several share a gateway.

    >>> TenantConfig("alice", token_sha256="ab" * 32, max_sandboxes=2).create_rate
    10.0
    """

    name: str
    token_sha256: str = ""
    max_sandboxes: int = 32     # claimed sandboxes at once
    create_rate: float = 10.0   # sandbox creations per second, sustained
    create_burst: int = 20      # creations at once after a quiet spell
    execute_rate: float = 100.0  # executions and plugin invocations per second, sustained
    execute_burst: int = 200

    def __post_init__(self) -> None:
        where = f"[tenants.{self.name}]"
        if not _TENANT_NAME.match(self.name):
            raise ConfigError(f"{where}: a tenant name is 1-63 letters, digits, '_', '.', '-'")
        object.__setattr__(self, "token_sha256", self.token_sha256.strip().lower())
        if self.name == DEFAULT_TENANT and self.token_sha256:
            raise ConfigError(f"{where}: the default tenant's token is SANDCELL_TOKEN (or the "
                              "generated one); remove token_sha256")
        if self.name != DEFAULT_TENANT and not _SHA256_HEX.match(self.token_sha256):
            raise ConfigError(f"{where}: token_sha256 must be 64 hex digits; get it with "
                              "`sandcell tenants hash-token` (reads the token on stdin)")
        if self.max_sandboxes < 0 or self.create_burst < 1 or self.execute_burst < 1:
            raise ConfigError(f"{where}: need max_sandboxes >= 0, create_burst >= 1, "
                              "execute_burst >= 1")
        if self.create_rate <= 0 or self.execute_rate <= 0:
            raise ConfigError(f"{where}: create_rate and execute_rate must be > 0 (per second)")


BIND_IMAGE_DIRS = ("auto", "always", "never")


@dataclasses.dataclass(frozen=True)
class GatewayConfig:
    """Everything the gateway needs to start. Build with :func:`load_config`."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    gateway_id: str = ""
    sandbox_ttl: float = 3600.0
    idle_timeout: float = 1800.0  # no execute/interrupt/WebSocket message for this long: culled
    claim_timeout: float = 30.0
    ready_timeout: float = 60.0
    interrupt_grace: float = 10.0
    max_body_size: int = 1024 * 1024
    max_file_size: int = 100 * 1024 * 1024  # one upload through the files API; past it: 413
    websocket_max_message_size: int = 10 * 1024 * 1024  # Tornado's default; over it: close 1009
    max_output_bytes: int = 32 * 1024 * 1024  # per execution; beyond it output is dropped
    # One kernel message (all its parts); a bigger one kills its sandbox ("output message over
    # the limit"). 64 MiB: twice max_output_bytes, so any message a cell's output budget can
    # show gets through whole, e.g. a 45 MiB PNG (base64 in JSON is 4/3 of it).
    max_kernel_message_bytes: int = 64 * 1024 * 1024
    # per sandbox; over it the gateway reads slower. 200: 8 sandboxes flooding at 1000 each
    # kept one event loop busy for seconds on 2 cores (a bystander's 1+1 took 2.7 s); a real
    # cell batches its prints and a widget sends tens a second
    max_kernel_messages_per_second: float = 200.0
    max_kernel_bytes_per_second: int = 64 * 1024 * 1024  # per sandbox, likewise
    # Containers started at once while refilling. A start waits on the engine for about half
    # its wall time, so 2 per core keep the cores busy: on 2 cores, 2 -> 4 took 8-client churn
    # from 2.3 to 3.2 sessions/s (its CPU limit) and Poisson claims at 2/s from p50 2 s to 4 ms
    # (bench.churn); more only queue on the CPU
    launch_concurrency: int = dataclasses.field(default_factory=lambda: 2 * (os.cpu_count() or 1))
    # "auto": containers read their image's /usr and /opt from read-only copies, not through
    # the fuse-overlayfs storage driver, when that is Docker's driver (image_dirs.py);
    # "always", "never"
    bind_image_dirs: str = "auto"
    refill_delay: float = 0.25  # a claim's refill waits this long while the pool still has one
    pool_memory_budget: str = "2g"  # ready sandboxes of all pools together, above their floors
    state_dir: Path = Path()
    runtime_dir: Path = Path()
    store_path: Path = Path()  # session history (SQLite); default below
    history_retention: float = 86400.0  # seconds a deleted sandbox's history is kept
    max_sandboxes: int = 64  # claimed sandboxes of all tenants together
    templates: Mapping[str, TemplateConfig] = dataclasses.field(
        default_factory=lambda: {"python": TemplateConfig("python")}
    )
    plugins: PluginsConfig = PluginsConfig()
    cors: CorsConfig = CorsConfig()  # off: no origin allowed
    e2b: E2BConfig = E2BConfig()  # on: the E2B SDK's routes under /e2b (docs/e2b.md)
    # The Docker Engine API endpoint ("unix:///...", "tcp://host:2375"); "" means what
    # docker.from_env() picks: $DOCKER_HOST (and its TLS variables), else the local socket.
    docker_host: str = ""

    tenants: Mapping[str, TenantConfig] = dataclasses.field(
        default_factory=lambda: {DEFAULT_TENANT: TenantConfig(DEFAULT_TENANT)}
    )

    def __post_init__(self) -> None:
        if self.idle_timeout < 0:
            raise ConfigError(f"[gateway] idle_timeout must be >= 0 (0 disables), got {self.idle_timeout}")
        if self.max_sandboxes < 0:
            raise ConfigError("[gateway]: max_sandboxes must be >= 0")
        if isinstance(self.launch_concurrency, bool) or not isinstance(self.launch_concurrency, int) \
                or self.launch_concurrency < 1:
            raise ConfigError("[gateway] launch_concurrency must be a whole number >= 1 "
                              f"(containers started at once), got {self.launch_concurrency!r}")
        _size(self.pool_memory_budget, "[gateway] pool_memory_budget")
        if self.bind_image_dirs not in BIND_IMAGE_DIRS:
            raise ConfigError(f"[gateway] bind_image_dirs must be one of "
                              f"{', '.join(BIND_IMAGE_DIRS)}, got {self.bind_image_dirs!r}")
        if self.max_kernel_message_bytes < 65536:
            raise ConfigError("[gateway] max_kernel_message_bytes must be >= 65536 (64 KiB), "
                              f"got {self.max_kernel_message_bytes}")
        if self.max_kernel_messages_per_second <= 0 or self.max_kernel_bytes_per_second <= 0:
            raise ConfigError("[gateway] max_kernel_messages_per_second and "
                              "max_kernel_bytes_per_second must be > 0")
        if not self.gateway_id:
            # port 0 means "any free port": several such gateways must not share an id
            suffix = self.port or f"pid{os.getpid()}"
            object.__setattr__(self, "gateway_id", f"sandcell-{suffix}")
        if self.state_dir == Path():
            object.__setattr__(self, "state_dir", default_state_dir())
        if self.runtime_dir == Path():
            object.__setattr__(self, "runtime_dir", default_runtime_dir())
        if self.store_path == Path():
            object.__setattr__(self, "store_path",
                               default_data_dir() / f"sandcell-{self.gateway_id}.sqlite3")

    def template(self, name: str) -> TemplateConfig:
        return self.templates[name]


def _size(text: str, where: str) -> int:
    try:
        return parse_size(text)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def default_runtime_dir() -> Path:
    """Where the gateway announces itself to SDK clients (same place the SDK looks)."""
    env = os.environ.get("SANDCELL_RUNTIME_DIR")
    return Path(env) if env else Path.home() / ".local/share/sandcell/runtime"


def default_data_dir() -> Path:
    """Durable gateway data (the history store): ``$XDG_DATA_HOME/sandcell``."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share"
    return Path(base) / "sandcell"


def default_state_dir() -> Path:
    """Per-sandbox connection directories. Short on purpose: ZMQ ipc paths max ~107 bytes."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"sandcell-{os.getuid()}"


def load_config(path: str | Path | None = None, **overrides: Any) -> GatewayConfig:
    """Read ``path`` (TOML) if given, then apply non-None ``overrides`` (CLI flags)."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    gateway = _known(raw.get("gateway", {}), GatewayConfig, "[gateway]")
    gateway.update({k: v for k, v in overrides.items() if v is not None})
    gateway["cors"] = _cors(gateway.pop("cors", {}))
    gateway["e2b"] = _e2b(gateway.pop("e2b", {}))
    for key in ("state_dir", "runtime_dir", "store_path"):
        if key in gateway:
            gateway[key] = Path(gateway[key]).expanduser()
    gateway["templates"] = _templates(raw.get("templates", {}))
    here = Path(path).parent if path is not None else Path.cwd()
    gateway["plugins"] = _plugins(raw.get("plugins", {}), here)
    gateway["tenants"] = _tenants(raw.get("tenants", {}))
    return GatewayConfig(**gateway)


def _tenants(raw: Any) -> dict[str, TenantConfig]:
    """``[tenants.<name>]``; ``default`` always exists, and no two tenants share a token."""
    if not isinstance(raw, dict):
        raise ConfigError("[tenants] must be a table of tenant tables")
    tenants = {DEFAULT_TENANT: TenantConfig(DEFAULT_TENANT)}
    for name, table in raw.items():
        tenants[name] = TenantConfig(name=name, **_known(table, TenantConfig, f"[tenants.{name}]"))
    owners: dict[str, str] = {}
    for tenant in tenants.values():
        if tenant.token_sha256 in owners:
            other = owners[tenant.token_sha256]
            raise ConfigError(f"[tenants.{tenant.name}] and [tenants.{other}] have the same "
                              "token_sha256; give each tenant its own token")
        if tenant.token_sha256:
            owners[tenant.token_sha256] = tenant.name
    return tenants


def _cors(raw: Any) -> CorsConfig:
    """``[gateway.cors]``; each list may be one string, commas separating several (the form of
    Jupyter Kernel Gateway's options, so its settings carry over)."""
    fields = _known(raw, CorsConfig, _CORS)
    for key in ("allow_origin", "allow_headers", "allow_methods", "expose_headers"):
        if key in fields:
            fields[key] = _strings(fields[key], f"{_CORS} {key}")
    return CorsConfig(**fields)


def _e2b(raw: Any) -> E2BConfig:
    """``[gateway.e2b]``; its ``aliases`` add to (or override) the default ones."""
    fields = _known(raw, E2BConfig, "[gateway.e2b]")
    if isinstance(fields.get("aliases"), dict):
        fields["aliases"] = {**E2BConfig().aliases, **fields["aliases"]}
    return E2BConfig(**fields)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings, or one string")
    return tuple(v.strip() for v in value if v.strip())


def _plugins(raw: Any, here: Path) -> PluginsConfig:
    """``[plugins]``; relative directories are relative to the config file."""
    fields = _known(raw, PluginsConfig, "[plugins]")
    limits = _known(fields.pop("limits", {}), Limits, "[plugins.limits]")
    if "dir" in fields:
        fields["dir"] = here / fields["dir"]
    if "paths" in fields:
        fields["paths"] = tuple(here / p for p in fields["paths"])
    return PluginsConfig(limits=dataclasses.replace(PluginsConfig.limits, **limits), **fields)


def _templates(raw: Mapping[str, Any]) -> dict[str, TemplateConfig]:
    templates = {"python": TemplateConfig("python")}
    for name, table in raw.items():
        fields = _known(table, TemplateConfig, f"[templates.{name}]")
        limits = _known(fields.pop("limits", {}), Limits, f"[templates.{name}.limits]")
        templates[name] = TemplateConfig(name=name, limits=Limits(**limits), **fields)
    return templates


def _known(table: Any, cls: type, where: str) -> dict[str, Any]:
    """Reject unknown keys so a typo in the config file is an error, not a silent default."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    allowed = {f.name for f in dataclasses.fields(cls)} - {"name", "templates", "plugins", "tenants"}
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    return dict(table)
