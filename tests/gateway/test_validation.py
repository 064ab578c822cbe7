from __future__ import annotations

import pytest

from sandcell_gateway.errors import BadRequest
from sandcell_gateway.handlers import CREATE_FIELDS, EXECUTE_FIELDS
from sandcell_gateway.validation import parse_body


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
