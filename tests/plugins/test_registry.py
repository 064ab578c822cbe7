"""Manifests, discovery and JSON-schema checks (no Docker)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sandcell_gateway.config import ConfigError, PluginsConfig, load_config
from sandcell_gateway.errors import NotFound
from sandcell_gateway.plugins.registry import InvalidInput, PluginRegistry, schema_errors

TESTDATA = Path(__file__).parent / "testdata"


def write_manifest(directory: Path, **changes: Any) -> Path:
    manifest = json.loads((TESTDATA / "sandcell_test_plugin" / "plugin.json").read_text())
    manifest.update(changes)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "plugin.json").write_text(json.dumps({k: v for k, v in manifest.items()
                                                       if v is not None}))
    return directory


def test_the_checkout_s_plugins_are_discovered_by_default() -> None:
    registry = PluginRegistry.discover(load_config().plugins)
    subtract = registry.get("subtract_numbers")
    assert subtract.language == "python" and subtract.entrypoint == "plugin:subtract"
    assert subtract.describe()["versions"] == ["1.0.0"]


def test_config_paths_add_plugins(tmp_path: Path) -> None:
    config = PluginsConfig(dir=tmp_path / "none", paths=(TESTDATA / "sandcell_test_plugin",))
    assert [m.name for m in PluginRegistry.discover(config).list()] == ["sandcell_test_plugin"]


def test_plugins_table_in_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "sandcell.toml"
    path.write_text('[plugins]\ndir = "mine"\nmin_ready = 0\n[plugins.limits]\nmemory = "128m"\n')
    plugins = load_config(path).plugins
    assert plugins.dir == tmp_path / "mine" and plugins.min_ready == 0
    assert plugins.limits.memory == "128m" and plugins.limits.network == "none"
    path.write_text("[plugins]\nmin_redy = 1\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(path)


def test_unknown_plugin_is_not_found() -> None:
    with pytest.raises(NotFound, match="no plugin 'nope'"):
        PluginRegistry().get("nope")


@pytest.mark.parametrize(("changes", "words"), [
    ({"name": "Bad-Name"}, "must match"),
    ({"isolation": "per_user"}, "isolation must be one of per_call, per_tenant, shared, not 'per_user'"),
    ({"max_invocations": 0}, "max_invocations must be an integer >= 1, not 0"),
    ({"max_invocations": True}, "max_invocations must be an integer >= 1"),
    ({"max_invocations": "5"}, "max_invocations must be an integer >= 1"),
    ({"isolation": "per_call", "max_invocations": 5}, "isolation per_call serves one call"),
    ({"max_age": 0}, "max_age must be a number of seconds"),
    ({"max_age": "1h"}, "max_age must be a number of seconds"),
    ({"reuse": {"max_invocations": 2}}, '"reuse" was replaced by "isolation"'),
    ({"input_schema": {"type": "nonsense"}}, "input_schema is not a JSON Schema"),
    ({"entrypoint": None}, "missing ['entrypoint']"),
    ({"colour": "blue"}, "unknown ['colour']"),
])
def test_bad_manifests_are_clear_errors(tmp_path: Path, changes: dict[str, Any], words: str) -> None:
    write_manifest(tmp_path / "p", **changes)
    with pytest.raises(ConfigError) as info:
        PluginRegistry.discover(PluginsConfig(dir=tmp_path))
    assert words in str(info.value) and "plugin.json" in str(info.value)


def test_two_plugins_with_one_name_are_an_error(tmp_path: Path) -> None:
    write_manifest(tmp_path / "a")
    write_manifest(tmp_path / "b")
    with pytest.raises(ConfigError, match="two plugins are named"):
        PluginRegistry.discover(PluginsConfig(dir=tmp_path))


def test_input_errors_list_every_failing_field() -> None:
    manifest = PluginRegistry.discover(load_config().plugins).get("subtract_numbers")
    with pytest.raises(InvalidInput) as info:
        manifest.validate_input({"operand1": "ten", "surprise": True})
    assert info.value.status == 400 and info.value.code == "invalid_input"
    assert info.value.fields == [
        {"field": "operand1", "message": "'ten' is not of type 'number'"},
        {"field": "operand2", "message": "required"},
        {"field": "surprise", "message": "unknown field"}]
    manifest.validate_input({"operand1": 1, "operand2": 2.5})


def test_nested_fields_are_dotted() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "object", "required": ["b"]}}}
    assert schema_errors(schema, {"a": {}}) == [{"field": "a.b", "message": "required"}]
    assert schema_errors(schema, []) == [{"field": "", "message": "[] is not of type 'object'"}]


@pytest.mark.parametrize(("changes", "policy"), [
    ({}, ("per_tenant", True, 1000, 300.0)),
    ({"isolation": "per_call"}, ("per_call", False, 1, 300.0)),
    ({"isolation": "shared", "max_invocations": 5, "max_age": 30}, ("shared", True, 5, 30)),
    ({"max_invocations": 1}, ("per_tenant", False, 1, 300.0)),
])
def test_the_isolation_policy_and_its_limits(tmp_path: Path, changes: dict[str, Any],
                                             policy: tuple[str, bool, int, float]) -> None:
    write_manifest(tmp_path / "p", **changes)
    (manifest,) = PluginRegistry.discover(PluginsConfig(dir=tmp_path)).list()
    isolation, reusable, count, age = policy
    assert (manifest.isolation, manifest.reusable, manifest.max_invocations, manifest.max_age) == policy
    described = manifest.describe()
    assert (described["isolation"], described["max_invocations"], described["max_age"]) == \
        (isolation, count, age)


def test_the_calculator_plugins_are_shared() -> None:
    registry = PluginRegistry.discover(load_config().plugins)
    assert {registry.get(name).isolation for name in
            ("add_numbers", "multiply_numbers", "subtract_numbers")} == {"shared"}


def test_schema_validators_are_built_once_per_manifest(monkeypatch: pytest.MonkeyPatch) -> None:
    from sandcell_gateway.plugins import registry as module

    manifest = PluginRegistry.discover(load_config().plugins).get("subtract_numbers")
    used: list[object] = []
    real = module.schema_errors
    monkeypatch.setattr(module, "schema_errors", lambda schema, value: used.append(schema) or real(schema, value))
    output = {"result": 1, "operation": "subtract", "operand1": 1, "operand2": 2}
    for n in range(3):
        manifest.validate_input({"operand1": n, "operand2": 2})
        assert manifest.output_errors(output) == []
    inputs, outputs = used[0::2], used[1::2]
    assert all(v is inputs[0] for v in inputs) and all(v is outputs[0] for v in outputs)
    assert not isinstance(inputs[0], dict)  # a compiled validator, not the schema again
