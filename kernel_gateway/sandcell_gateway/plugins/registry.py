"""Plugin manifests (``plugin.json``) and the registry that finds them.

A plugin is a directory holding ``plugin.json`` and its code::

    plugins/subtract_numbers/
      plugin.json   {"name": "subtract_numbers", "version": "1.0.0", "language": "python",
                     "image": "sandcell/plugin-python:latest", "entrypoint": "plugin:subtract",
                     "input_schema": {...}, "output_schema": {...}}
      plugin.py

Example::

    registry = PluginRegistry.discover(config.plugins)
    manifest = registry.get("subtract_numbers")
    manifest.validate_input({"operand1": 10, "operand2": 5})
"""

from __future__ import annotations

import dataclasses
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
OPTIONAL = ("description", "reuse", "timeout")


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
    # "fresh": every invocation gets a new worker, destroyed afterwards (the default);
    # {"max_invocations": N}: a worker serves up to N successful invocations in a row.
    reuse: str | dict[str, int] = "fresh"
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
        missing = [key for key in REQUIRED if key not in raw]
        unknown = sorted(set(raw) - set(REQUIRED) - set(OPTIONAL))
        if missing or unknown:
            raise ConfigError(f"{where}: missing {missing or 'nothing'}, unknown {unknown or 'nothing'}")
        manifest = cls(directory=directory.resolve(), **raw)
        manifest.check(where)
        return manifest

    def check(self, where: Path) -> None:
        if not NAME.match(self.name):
            raise ConfigError(f"{where}: name {self.name!r} must match {NAME.pattern}")
        if not _valid_reuse(self.reuse):
            raise ConfigError(f'{where}: reuse must be "fresh" or {{"max_invocations": N}} with '
                              f"an integer N >= 1, not {self.reuse!r}")
        for key in ("input_schema", "output_schema"):
            try:
                jsonschema.Draft202012Validator.check_schema(getattr(self, key))
            except jsonschema.exceptions.SchemaError as exc:
                raise ConfigError(f"{where}: {key} is not a JSON Schema: {exc.message}") from exc

    @property
    def max_invocations(self) -> int:
        """How many invocations one worker may serve: 1 under the ``fresh`` policy."""
        return self.reuse["max_invocations"] if isinstance(self.reuse, dict) else 1

    def describe(self) -> dict[str, Any]:
        """The public view served by ``GET /api/v1/plugins/{name}``."""
        return {"name": self.name, "version": self.version, "versions": [self.version],
                "language": self.language, "description": self.description,
                "image": self.image, "reuse": self.reuse, "timeout": self.timeout,
                "input_schema": self.input_schema, "output_schema": self.output_schema}

    def validate_input(self, inputs: Any) -> None:
        """Raise :class:`InvalidInput` listing every failing field."""
        fields = schema_errors(self.input_schema, inputs)
        if fields:
            listed = "; ".join(f"{f['field'] or '(input)'}: {f['message']}" for f in fields)
            raise InvalidInput(f"input does not match {self.name}'s input schema: {listed}", fields)

    def output_errors(self, output: Any) -> list[dict[str, str]]:
        return schema_errors(self.output_schema, output)


def _valid_reuse(reuse: object) -> bool:
    if reuse == "fresh":
        return True
    if not isinstance(reuse, dict) or set(reuse) != {"max_invocations"}:
        return False
    count = reuse["max_invocations"]
    return isinstance(count, int) and not isinstance(count, bool) and count >= 1


def schema_errors(schema: dict[str, Any], value: Any) -> list[dict[str, str]]:
    """``[{"field": "operand1", "message": ...}, ...]``, sorted by field; empty when valid."""
    validator = jsonschema.Draft202012Validator(schema)
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
