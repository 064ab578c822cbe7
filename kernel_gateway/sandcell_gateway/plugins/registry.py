"""Plugin manifests (``plugin.json``) and the registry that finds them.

A plugin is a directory holding ``plugin.json`` and its code (``isolation``,
``max_invocations`` and ``max_age`` are optional: the worker reuse policy, docs/plugins.md)::

    plugins/subtract_numbers/
      plugin.json   {"name": "subtract_numbers", "version": "1.0.0", "language": "python",
                     "image": "sandcell/plugin-python:latest", "entrypoint": "plugin:subtract",
                     "isolation": "shared", "max_invocations": 1000, "max_age": 300,
                     "input_schema": {...}, "output_schema": {...}}
      plugin.py

Example::

    registry = PluginRegistry.discover(config.plugins)
    manifest = registry.get("subtract_numbers")
    manifest.validate_input({"operand1": 10, "operand2": 5})
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema.exceptions

from ..config import ConfigError, PluginsConfig
from ..errors import BadRequest, NotFound

NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
REQUIRED = ("name", "version", "language", "image", "entrypoint", "input_schema", "output_schema")
OPTIONAL = ("description", "isolation", "max_invocations", "max_age", "timeout")
# Who may be served by one worker process, call after call (docs/plugins.md, "Isolation"):
# ``per_call``: nobody else (a fresh worker per call); ``per_tenant``: the calls of one tenant;
# ``shared``: everyone (stateless, trusted platform plugins such as the calculator).
ISOLATIONS = ("per_call", "per_tenant", "shared")
DEFAULT_MAX_INVOCATIONS = 1000
DEFAULT_MAX_AGE = 300.0  # seconds from a worker's start; an idle worker is removed past it


class InvalidInput(BadRequest):
    """The input does not match the plugin's input schema; ``fields`` says where."""

    code = "invalid_input"

    def __init__(self, message: str, fields: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.fields = fields


@dataclasses.dataclass(frozen=True)
class PluginManifest:
    """One plugin as declared by its ``plugin.json``; ``directory`` is mounted into workers."""

    name: str
    version: str
    language: str
    image: str
    entrypoint: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    directory: Path
    description: str = ""
    isolation: str = "per_tenant"
    max_invocations: int = DEFAULT_MAX_INVOCATIONS  # calls one worker serves, then recycled
    max_age: float = DEFAULT_MAX_AGE
    timeout: float | None = None

    @classmethod
    def load(cls, directory: Path) -> PluginManifest:
        """Read and check ``directory/plugin.json``; errors name the file and the field."""
        where = directory / "plugin.json"
        try:
            raw = json.loads(where.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{where}: cannot read the manifest: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: a manifest is a JSON object")
        if "reuse" in raw:  # the policy's name before issue 13
            raise ConfigError(f'{where}: "reuse" was replaced by "isolation" ({", ".join(ISOLATIONS)}) '
                              'and "max_invocations": see docs/plugins.md')
        missing = [key for key in REQUIRED if key not in raw]
        unknown = sorted(set(raw) - set(REQUIRED) - set(OPTIONAL))
        if missing or unknown:
            raise ConfigError(f"{where}: missing {missing or 'nothing'}, unknown {unknown or 'nothing'}")
        manifest = cls(directory=directory.resolve(), **cls._defaults_for(raw))
        manifest.check(where)
        return manifest

    def check(self, where: Path) -> None:
        if not NAME.match(self.name):
            raise ConfigError(f"{where}: name {self.name!r} must match {NAME.pattern}")
        self._check_reuse(where)
        for key in ("input_schema", "output_schema"):
            try:
                jsonschema.Draft202012Validator.check_schema(getattr(self, key))
            except jsonschema.exceptions.SchemaError as exc:
                raise ConfigError(f"{where}: {key} is not a JSON Schema: {exc.message}") from exc

    def _check_reuse(self, where: Path) -> None:
        if self.isolation not in ISOLATIONS:
            raise ConfigError(f"{where}: isolation must be one of {', '.join(ISOLATIONS)}, "
                              f"not {self.isolation!r}")
        count = self.max_invocations
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ConfigError(f"{where}: max_invocations must be an integer >= 1, not {count!r}")
        if self.isolation == "per_call" and count != 1:
            raise ConfigError(f"{where}: isolation per_call serves one call per worker; "
                              f"drop max_invocations ({count}) or choose per_tenant or shared")
        age = self.max_age
        if not isinstance(age, (int, float)) or isinstance(age, bool) or not 0 < age <= 86400:
            raise ConfigError(f"{where}: max_age must be a number of seconds in (0, 86400], "
                              f"not {age!r}")

    @classmethod
    def _defaults_for(cls, raw: dict[str, Any]) -> dict[str, Any]:
        """A ``per_call`` manifest's workers serve one call each (its default count)."""
        if raw.get("isolation") == "per_call":
            return {"max_invocations": 1, **raw}
        return raw

    @property
    def reusable(self) -> bool:
        """Whether a worker that completed a call may take another one."""
        return self.isolation != "per_call" and self.max_invocations > 1

    def describe(self) -> dict[str, Any]:
        """The public view served by ``GET /api/v1/plugins/{name}``."""
        return {"name": self.name, "version": self.version, "versions": [self.version],
                "language": self.language, "description": self.description,
                "image": self.image, "isolation": self.isolation,
                "max_invocations": self.max_invocations, "max_age": self.max_age,
                "timeout": self.timeout,
                "input_schema": self.input_schema, "output_schema": self.output_schema}

    def validate_input(self, inputs: Any) -> None:
        """Raise :class:`InvalidInput` listing every failing field."""
        fields = schema_errors(self._input_validator, inputs)
        if fields:
            listed = "; ".join(f"{f['field'] or '(input)'}: {f['message']}" for f in fields)
            raise InvalidInput(f"input does not match {self.name}'s input schema: {listed}", fields)

    def output_errors(self, output: Any) -> list[dict[str, str]]:
        return schema_errors(self._output_validator, output)

    # Built once per manifest, not per call: building one costs more than validating
    # (``cached_property`` writes the instance dict, which a frozen dataclass allows).
    @functools.cached_property
    def _input_validator(self) -> jsonschema.Draft202012Validator:
        return jsonschema.Draft202012Validator(self.input_schema)

    @functools.cached_property
    def _output_validator(self) -> jsonschema.Draft202012Validator:
        return jsonschema.Draft202012Validator(self.output_schema)


def schema_errors(schema: dict[str, Any] | jsonschema.Draft202012Validator,
                  value: Any) -> list[dict[str, str]]:
    """``[{"field": "operand1", "message": ...}, ...]``, sorted by field; empty when valid."""
    validator = (schema if isinstance(schema, jsonschema.Draft202012Validator)
                 else jsonschema.Draft202012Validator(schema))
    found = []
    for error in validator.iter_errors(value):
        path = ".".join(str(part) for part in error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            for name in error.validator_value:
                if name not in error.instance:
                    found.append({"field": _join(path, name), "message": "required"})
            continue
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties", {}))
            for name in sorted(set(error.instance) - allowed):
                found.append({"field": _join(path, name), "message": "unknown field"})
            continue
        found.append({"field": path, "message": error.message})
    return sorted(found, key=lambda f: (f["field"], f["message"]))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class PluginRegistry:
    """Every manifest the gateway serves, by name."""

    def __init__(self, manifests: Iterable[PluginManifest] = ()) -> None:
        self._manifests: dict[str, PluginManifest] = {}
        for manifest in manifests:
            if manifest.name in self._manifests:
                raise ConfigError(f"two plugins are named {manifest.name!r}: "
                                  f"{self._manifests[manifest.name].directory} and {manifest.directory}")
            self._manifests[manifest.name] = manifest

    @classmethod
    def discover(cls, config: PluginsConfig) -> PluginRegistry:
        """Manifests in ``config.dir/*/plugin.json`` plus ``config.paths``."""
        found = sorted(config.dir.glob("*/plugin.json")) if config.dir.is_dir() else []
        directories = [path.parent for path in found] + list(config.paths)
        return cls(PluginManifest.load(directory) for directory in directories)

    def get(self, name: str) -> PluginManifest:
        manifest = self._manifests.get(name)
        if manifest is None:
            known = ", ".join(sorted(self._manifests)) or "none"
            raise NotFound(f"no plugin {name!r} (registered: {known})")
        return manifest

    def __contains__(self, name: object) -> bool:
        return name in self._manifests

    def list(self) -> list[PluginManifest]:
        return sorted(self._manifests.values(), key=lambda m: m.name)
