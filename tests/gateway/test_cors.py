"""The CORS policy without HTTP: which origins get headers, and which headers.

The real browser is in tests/integration/test_cors.py.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pytest

from sandcell_gateway.config import ConfigError, CorsConfig, load_config
from sandcell_gateway.cors import CorsPolicy

APP = "https://app.example.com"


def policy(**fields: Any) -> CorsPolicy:
    return CorsPolicy(CorsConfig(**fields))


def test_off_by_default_no_header_for_any_origin() -> None:
    off = CorsPolicy()
    assert not off.enabled
    assert off.response_headers(APP) == {}
    assert off.preflight_headers(APP, ["GET"]) == {}
    assert load_config().cors == CorsConfig()


def test_an_allowed_origin_gets_its_own_origin_back_never_a_star() -> None:
    allowed = policy(allow_origin=(APP, "http://localhost:3000"))
    headers = allowed.response_headers(APP)
    assert headers["Access-Control-Allow-Origin"] == APP
    assert headers["Vary"] == "Origin"
    assert headers["Access-Control-Expose-Headers"] == \
        "Content-Disposition, Location, Retry-After, X-Request-Id"
    assert "Access-Control-Allow-Credentials" not in headers
    assert allowed.response_headers("http://localhost:3000")["Access-Control-Allow-Origin"] == \
        "http://localhost:3000"


@pytest.mark.parametrize("origin", [None, "", "https://evil.example", "http://app.example.com",
                                    "https://app.example.com:8443", "https://app.example.com.evil",
                                    "null"])
def test_other_origins_get_no_cors_header_only_vary(origin: str | None) -> None:
    assert policy(allow_origin=(APP,)).response_headers(origin) == {"Vary": "Origin"}
    assert policy(allow_origin=(APP,)).preflight_headers(origin, ["GET"]) == {}


def test_origins_compare_as_browsers_serialise_them() -> None:
    """Config spelled with capitals, a default port or a trailing slash still matches."""
    allowed = policy(allow_origin=("HTTPS://App.Example.com:443/", "http://h:80"))
    assert allowed.allows(APP) and allowed.allows("http://h")
    assert allowed.allows("https://APP.example.com")  # a header in capitals, too
    assert not allowed.allows("https://app.example.com:444")


def test_star_must_be_asked_for_and_then_answers_star() -> None:
    anyone = policy(allow_origin=("*",))
    assert anyone.response_headers("https://anything.example")[
        "Access-Control-Allow-Origin"] == "*"
    assert anyone.response_headers(None) == {"Vary": "Origin"}  # not a CORS request


def test_preflight_lists_the_routes_methods_headers_and_max_age() -> None:
    headers = policy(allow_origin=(APP,)).preflight_headers(APP, ["GET", "POST", "OPTIONS"])
    assert headers == {"Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                       "Access-Control-Allow-Headers": "Authorization, Content-Type",
                       "Access-Control-Max-Age": "600"}


def test_configured_methods_headers_credentials_and_max_age_are_used() -> None:
    custom = policy(allow_origin=(APP,), allow_methods=("get",), max_age=0,
                    allow_headers=("Authorization", "X-Custom"), allow_credentials=True,
                    expose_headers=())
    assert custom.preflight_headers(APP, ["GET", "POST"]) == {
        "Access-Control-Allow-Methods": "GET", "Access-Control-Max-Age": "0",
        "Access-Control-Allow-Headers": "Authorization, X-Custom"}
    assert custom.response_headers(APP) == {"Vary": "Origin",
                                            "Access-Control-Allow-Origin": APP,
                                            "Access-Control-Allow-Credentials": "true"}


def test_config_file_takes_lists_or_one_string(tmp_path: Path) -> None:
    path = tmp_path / "sandcell.toml"
    path.write_text('[gateway]\nport = 9000\n[gateway.cors]\n'
                    'allow_origin = "https://a.example, https://b.example"\n'
                    'allow_headers = ["Authorization"]\nallow_methods = "GET,POST"\n'
                    'expose_headers = ""\nmax_age = 60\nallow_credentials = true\n')
    cors = load_config(path).cors
    assert cors == CorsConfig(allow_origin=("https://a.example", "https://b.example"),
                              allow_headers=("Authorization",), allow_methods=("GET", "POST"),
                              expose_headers=(), max_age=60, allow_credentials=True)


@pytest.mark.parametrize(("table", "words"), [
    ("allow_orign = ['https://a.example']", "[gateway.cors]: unknown key(s) allow_orign"),
    ("allow_origin = ['https://a.example/app']", "'https://a.example/app' is not an origin"),
    ("allow_origin = ['a.example']", "'a.example' is not an origin"),
    ("allow_origin = 5", "allow_origin must be a list of strings, or one string"),
    ("allow_origin = [1]", "allow_origin must be a list of strings, or one string"),
    ("allow_origin = '*'\nallow_credentials = true", "browsers refuse credentials"),
    ("allow_credentials = 'yes'", "allow_credentials must be true or false"),
    ("allow_headers = ['Bad Header']", "'Bad Header' is not a header name"),
    ("expose_headers = ['X:Y']", "'X:Y' is not a header name"),
    ("allow_methods = ['FETCH']", "'FETCH' is not one of GET"),
    ("max_age = -1", "max_age must be a whole number of seconds >= 0"),
    ("max_age = 1.5", "max_age must be a whole number"),
    ("max_age = true", "max_age must be a whole number"),
])
def test_bad_cors_tables_are_clear_errors(tmp_path: Path, table: str, words: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"[gateway.cors]\n{table}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert words in str(info.value)


def test_cors_must_be_a_table(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[gateway]\ncors = "https://a.example"\n')
    with pytest.raises(ConfigError, match=r"\[gateway.cors\] must be a table"):
        load_config(path)


def test_the_readmes_cors_table_shows_the_defaults() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("```toml\n[gateway]\n", 1)[1].split("```", 1)[0]
    table = tomllib.loads("[gateway]\n" + block)["gateway"]["cors"]
    shown = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}
    assert CorsConfig(**shown) == CorsConfig()
    assert set(shown) == {f.name for f in dataclasses.fields(CorsConfig)}
