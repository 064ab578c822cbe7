"""Gateway configuration: defaults, overridden by a TOML file, overridden by CLI flags.

Example ``sandcell.toml``::

    [gateway]
    port = 8765
    sandbox_ttl = 3600

    [templates.python]
    min_ready = 2
    max_total = 16

    [templates.python.limits]
    memory = "1g"
    network = "none"
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any, Mapping

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

    def __post_init__(self) -> None:
        if self.min_ready < 0 or self.max_total < 1 or self.min_ready > self.max_total:
            raise ConfigError(
                f"template {self.name!r}: need 0 <= min_ready <= max_total and max_total >= 1, "
                f"got min_ready={self.min_ready}, max_total={self.max_total}"
            )


@dataclasses.dataclass(frozen=True)
class GatewayConfig:
    """Everything the gateway needs to start. Build with :func:`load_config`."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    gateway_id: str = ""
    sandbox_ttl: float = 3600.0
    claim_timeout: float = 30.0
    ready_timeout: float = 60.0
    interrupt_grace: float = 10.0
    max_body_size: int = 1024 * 1024
    launch_concurrency: int = 2
    state_dir: Path = Path()
    runtime_dir: Path = Path()
    templates: Mapping[str, TemplateConfig] = dataclasses.field(
        default_factory=lambda: {"python": TemplateConfig("python")}
    )

    def __post_init__(self) -> None:
        if not self.gateway_id:
            # port 0 means "any free port": several such gateways must not share an id
            suffix = self.port or f"pid{os.getpid()}"
            object.__setattr__(self, "gateway_id", f"sandcell-{suffix}")
        if self.state_dir == Path():
            object.__setattr__(self, "state_dir", default_state_dir())
        if self.runtime_dir == Path():
            object.__setattr__(self, "runtime_dir", default_runtime_dir())

    def template(self, name: str) -> TemplateConfig:
        return self.templates[name]


def default_runtime_dir() -> Path:
    """Where the gateway announces itself to SDK clients (same place the SDK looks)."""
    env = os.environ.get("SANDCELL_RUNTIME_DIR")
    return Path(env) if env else Path.home() / ".local/share/sandcell/runtime"


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
    for key in ("state_dir", "runtime_dir"):
        if key in gateway:
            gateway[key] = Path(gateway[key])
    gateway["templates"] = _templates(raw.get("templates", {}))
    return GatewayConfig(**gateway)


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
    allowed = {f.name for f in dataclasses.fields(cls)} - {"name", "templates"}
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    return dict(table)
