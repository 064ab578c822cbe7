from __future__ import annotations

from pathlib import Path

import pytest

from sandcell_gateway.config import ConfigError, load_config


def test_defaults_give_a_python_template_on_8765() -> None:
    config = load_config()
    assert config.port == 8765 and config.host == "127.0.0.1"
    python = config.template("python")
    assert python.limits.network == "none" and python.limits.read_only
    assert config.gateway_id == "sandcell-8765"


def test_file_overrides_and_flags_override_file(tmp_path: Path) -> None:
    path = tmp_path / "sandcell.toml"
    path.write_text('[gateway]\nport = 9000\nclaim_timeout = 5\n'
                    '[templates.big]\nmin_ready = 0\nmax_total = 2\n'
                    '[templates.big.limits]\nmemory = "4g"\n')
    config = load_config(path, port=9100, host=None)
    assert config.port == 9100 and config.claim_timeout == 5
    assert config.template("big").limits.memory == "4g"
    assert config.template("big").limits.pids == 256  # untouched default
    assert set(config.templates) == {"python", "big"}


def test_port_zero_gateways_get_distinct_ids() -> None:
    assert load_config(port=0).gateway_id.startswith("sandcell-pid")


@pytest.mark.parametrize(("text", "words"), [
    ("[gateway]\nprot = 1\n", "unknown key(s) prot"),
    ("[templates.x]\nmin_ready = 5\nmax_total = 2\n", "min_ready <= max_total"),
    ("[templates.x.limits]\nmemroy = '1g'\n", "[templates.x.limits]: unknown key(s) memroy"),
    ("not toml ===", "cannot read config file"),
    ("[gateway]\nlaunch_concurrency = 0\n", "launch_concurrency must be a whole number >= 1"),
    ("[gateway]\nlaunch_concurrency = true\n", "launch_concurrency must be a whole number >= 1"),
])
def test_bad_files_are_clear_errors(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert words in str(info.value)


def test_the_plugin_worker_limits_are_config_keys(tmp_path: Path) -> None:
    path = tmp_path / "sandcell.toml"
    path.write_text("[plugins]\nmax_worker_message_bytes = 8388608\nmax_output_bytes = 1024\n"
                    "max_events_per_second = 5\n")
    plugins = load_config(path).plugins
    assert (plugins.max_worker_message_bytes, plugins.max_output_bytes) == (8 << 20, 1024)
    assert (plugins.max_events_per_second, plugins.events_burst) == (5, 10)
    defaults = load_config().plugins
    assert (defaults.max_worker_message_bytes, defaults.max_output_bytes,
            defaults.max_events_per_second) == (4 << 20, 64 << 20, 50.0)


@pytest.mark.parametrize(("line", "words"), [
    ("max_worker_message_bytes = 1048576",
     "max_worker_message_bytes must be a whole number of bytes between 2097152 and 2147483647"),
    ("max_worker_message_bytes = 4294967296", "gRPC's limit is an int32), got 4294967296"),
    ("max_worker_message_bytes = '4m'",
     "(the Python kit sends outputs in 1 MiB chunks; gRPC's limit is an int32), got '4m'"),
    ("max_output_bytes = 0",
     "[plugins] max_output_bytes must be a whole number of bytes >= 1, got 0"),
    ("max_output_bytes = 1.5", "max_output_bytes must be a whole number of bytes >= 1, got 1.5"),
    ("max_events_per_second = 0", "max_events_per_second must be a finite number > 0"),
    ("max_events_per_second = inf", "max_events_per_second must be a finite number > 0"),
    ("max_events_per_second = nan", "max_events_per_second must be a finite number > 0"),
    ("max_events_per_second = true", "(progress and log events per second of one call), got True"),
])
def test_bad_plugin_worker_limits_are_clear_errors(tmp_path: Path, line: str, words: str) -> None:
    path = tmp_path / "sandcell.toml"
    path.write_text(f"[plugins]\n{line}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert words in str(info.value)
