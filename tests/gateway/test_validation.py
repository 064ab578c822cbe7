from __future__ import annotations

import dataclasses

import pytest

from sandcell_gateway.errors import BadRequest
from sandcell_gateway.handlers import CREATE_FIELDS, EXECUTE_FIELDS
from sandcell_gateway.validation import Field, parse_body


def test_accepts_a_valid_body() -> None:
    body = parse_body(b'{"template": "python", "timeout": 60, "env": {"A": "b"}}', CREATE_FIELDS)
    assert body == {"template": "python", "timeout": 60, "env": {"A": "b"}}


def test_empty_body_is_an_empty_object() -> None:
    assert parse_body(b"", CREATE_FIELDS) == {}


@pytest.mark.parametrize(("raw", "code", "words"), [
    (b"{nope", "invalid_json", "not valid JSON"),
    (b"[1]", "invalid_json", "JSON object"),
    (b'{"templte": "python"}', "invalid_request", "unknown field(s): templte"),
    (b'{"template": 3}', "invalid_request", "must be a string, got a number"),
    (b'{"timeout": true}', "invalid_request", "got a boolean"),
    (b'{"timeout": 0}', "invalid_request", "at least 1"),
    (b'{"env": {"A": 1}}', "invalid_request", "must map a string"),
    (b'{"env": {"A=B": "1"}}', "invalid_request", "invalid key 'A=B'"),
    (b'{"env": {"": "1"}}', "invalid_request", "invalid key ''"),
    (b'{"env": {"1A": "1"}}', "invalid_request", "invalid key '1A'"),
    (b'{"env": {"A\\n": "1"}}', "invalid_request", "invalid key 'A\\n'"),
    (b'{"env": {"A": "x\\u0000y"}}', "invalid_request", "invalid value for 'A' (not shown)"),
    (b'\xff', "invalid_json", "not valid JSON"),
])
def test_rejects_bad_create_bodies(raw: bytes, code: str, words: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_body(raw, CREATE_FIELDS)
    assert info.value.code == code and words in info.value.message


def test_execute_needs_code_and_allows_null_timeout() -> None:
    with pytest.raises(BadRequest, match="'code' is required"):
        parse_body(b"{}", EXECUTE_FIELDS)
    assert parse_body(b'{"code": "1", "timeout": null}', EXECUTE_FIELDS)["timeout"] is None


# The words every refusal says, in full: the message is the API's answer to a bad request.
@pytest.mark.parametrize(("raw", "message"), [
    (b'{"templte": "python", "zz": 1}',
     "unknown field(s): templte, zz; allowed: env, metadata, template, timeout"),
    (b"[1]", "body must be a JSON object"),
    (b'{"template": null}', "field 'template' must be a string, got null"),
    (b'{"template": []}', "field 'template' must be a string, got an array"),
    (b'{"template": {}}', "field 'template' must be a string, got an object"),
    (b'{"template": 1.5}', "field 'template' must be a string, got a number"),
    (b'{"timeout": "1"}', "field 'timeout' must be a number, got a string"),
    (b'{"timeout": false}', "field 'timeout' must be a number, got a boolean"),
    (b'{"metadata": 1}', "field 'metadata' must be an object, got a number"),
    (b'{"timeout": 0.999}', "field 'timeout' must be at least 1"),
    (b'{"timeout": 2592000.5}', "field 'timeout' must be at most 2.592e+06"),
    (b'{"metadata": {"a": 1}}', "field 'metadata' must map a string to a string"),
    (b'{"env": {"A=B": "1"}}',
     "field 'env' has an invalid key 'A=B': each must match [A-Za-z_][A-Za-z0-9_]*"),
    (b'{"env": {"OK": "1", "A": "x\\u0000y"}}',
     "field 'env' has an invalid value for 'A' (not shown): each value must match [^\\x00]*"),
])
def test_a_refusal_says_exactly_what_to_change(raw: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_body(raw, CREATE_FIELDS)
    assert info.value.message == message


def test_the_bounds_themselves_are_allowed() -> None:
    """At least 1 s and at most 30 days (MAX_SECONDS) for a sandbox's time to live."""
    for seconds in (1, 30 * 86400):
        assert parse_body(b'{"timeout": %d}' % seconds, CREATE_FIELDS) == {"timeout": seconds}


@pytest.mark.parametrize("raw", [b'{"timeout": NaN}', b'{"timeout": Infinity}',
                                 b'{"timeout": -Infinity}', b"[" * 100_000])
def test_what_json_does_not_allow_is_invalid_json(raw: bytes) -> None:
    """Python's json takes NaN and Infinity (a NaN time to live would never expire) and
    recurses on nesting; all are refused as JSON, never a 500."""
    with pytest.raises(BadRequest) as info:
        parse_body(raw, CREATE_FIELDS)
    assert info.value.code == "invalid_json"
    assert info.value.message.startswith("body is not valid JSON: ")
    if raw.startswith(b"{"):
        constant = raw.decode().split(": ")[1].rstrip("}")
        assert info.value.message == f"body is not valid JSON: {constant} is not a JSON number"


def test_an_optional_field_may_be_left_out_but_only_a_nullable_one_may_be_null() -> None:
    assert parse_body(b'{"code": "1"}', EXECUTE_FIELDS) == {"code": "1"}
    with pytest.raises(BadRequest) as info:
        parse_body(b'{"code": null}', EXECUTE_FIELDS)
    assert info.value.message == "field 'code' must be a string, got null"
    with pytest.raises(BadRequest) as info:
        parse_body(b"{}", EXECUTE_FIELDS)
    assert info.value.message == "field 'code' is required"


def test_a_nullable_field_is_still_checked_when_it_is_not_null() -> None:
    for raw, message in [(b'{"code": "1", "timeout": "x"}',
                          "field 'timeout' must be a number, got a string"),
                         (b'{"code": "1", "timeout": 0}', "field 'timeout' must be at least 0.001")]:
        with pytest.raises(BadRequest) as info:
            parse_body(raw, EXECUTE_FIELDS)
        assert info.value.message == message


def test_the_shared_field_tables_cannot_be_changed_at_run_time() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        CREATE_FIELDS["timeout"].maximum = None  # type: ignore[misc]


def test_a_field_of_several_types_names_each() -> None:
    fields = {"x": Field((str, dict)), "y": Field(list)}
    with pytest.raises(BadRequest) as info:
        parse_body(b'{"x": 1}', fields)
    assert info.value.message == "field 'x' must be a string or an object, got a number"
    with pytest.raises(BadRequest) as info:
        parse_body(b'{"y": 1}', fields)
    assert info.value.message == "field 'y' must be an array, got a number"
