"""Request body validation: a JSON object with known, typed fields and nothing else."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from .errors import BadRequest

# The longest time to live or timeout a request may ask for (30 days): beyond it a date no
# longer fits the platform's time_t, and nobody means it.
MAX_SECONDS = 30 * 86400

# An environment variable name a process can set: POSIX's portable spelling.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# An environment variable value: anything but NUL, which ends a C string.
ENV_VALUE = re.compile(r"[^\x00]*")


@dataclasses.dataclass(frozen=True)
class Field:
    """One body field: its type(s), and optional constraints."""

    # No mutants on the annotations: they are strings (the __future__ import) that nothing
    # evaluates, so `float & None` would do as well.
    types: type | tuple[type, ...]  # pragma: no mutate
    required: bool = False  # truth only: _check asks `if field.required`
    nullable: bool = False  # truth only: _check asks `and field.nullable`
    minimum: float | None = None  # pragma: no mutate
    maximum: float | None = None  # pragma: no mutate
    items: type | None = None  # pragma: no mutate (dict fields: the type of each key and value)
    key_pattern: re.Pattern[str] | None = None  # pragma: no mutate (dict: each key matches it)
    value_pattern: re.Pattern[str] | None = None  # pragma: no mutate (dict: each value matches)


def parse_body(raw: bytes, fields: dict[str, Field]) -> dict[str, Any]:
    """Decode ``raw`` and check it against ``fields``; raise :class:`BadRequest` saying what
    to change."""
    body = decode_object(raw)
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}; "
                         f"allowed: {', '.join(sorted(fields))}")
    for name, field in fields.items():
        _check(name, body, field)
    return body


def decode_object(raw: bytes) -> dict[str, Any]:
    """``raw`` as a JSON object (empty means ``{}``), else :class:`BadRequest` ``invalid_json``.

    Python's ``json`` accepts ``NaN`` and ``Infinity``; JSON does not, and a NaN time to live
    would never expire, so they are refused here.
    """
    try:
        body = json.loads(raw or b"{}", parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object", code="invalid_json")
    return body


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check(name: str, body: dict[str, Any], field: Field) -> None:
    if name not in body:
        if field.required:
            raise BadRequest(f"field {name!r} is required")
        return
    value = body[name]
    if value is None and field.nullable:
        return
    if not _is(value, field.types):
        raise BadRequest(f"field {name!r} must be {_describe(field.types)}, got {_json_type(value)}")
    if field.minimum is not None and value < field.minimum:
        raise BadRequest(f"field {name!r} must be at least {field.minimum:g}")
    if field.maximum is not None and value > field.maximum:
        raise BadRequest(f"field {name!r} must be at most {field.maximum:g}")
    if field.items is not None and isinstance(value, list):
        if not all(_is(item, field.items) for item in value):
            raise BadRequest(f"field {name!r} must hold only {_plural(field.items)}")
    elif field.items is not None and not all(_is(k, field.items) and _is(v, field.items)
                                             for k, v in value.items()):
        raise BadRequest(f"field {name!r} must map {_describe(field.items)} to "
                         f"{_describe(field.items)}")
    if field.key_pattern is not None:
        _check_pattern(name, "key", list(value), field.key_pattern)
    if field.value_pattern is not None:
        _check_values(name, value, field.value_pattern)


def _check_pattern(name: str, what: str, texts: list[str], pattern: re.Pattern[str]) -> None:
    bad = [text for text in texts if not pattern.fullmatch(text)]
    if bad:
        raise BadRequest(f"field {name!r} has an invalid {what} {bad[0]!r}: "
                         f"each must match {pattern.pattern}")


def _check_values(name: str, value: dict[str, str], pattern: re.Pattern[str]) -> None:
    # names the key, never the value: env values are mostly secrets
    bad = [key for key, text in value.items() if not pattern.fullmatch(text)]
    if bad:
        raise BadRequest(f"field {name!r} has an invalid value for {bad[0]!r} (not shown): "
                         f"each value must match {pattern.pattern}")


def _is(value: Any, types: type | tuple[type, ...]) -> bool:
    """Whether a JSON value has one of ``types``.

    >>> _is(True, bool), _is(True, int), _is(1, bool), _is(1.5, (int, float))
    (True, False, False, True)
    """
    options = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool):  # bool is an int in Python, never in JSON
        return bool in options
    return isinstance(value, options)


_NAMES = {str: "a string", int: "a number", float: "a number", dict: "an object",
          bool: "a boolean", list: "an array"}


def _describe(types: type | tuple[type, ...]) -> str:
    options = types if isinstance(types, tuple) else (types,)
    return " or ".join(sorted({_NAMES.get(t, t.__name__) for t in options}))


def _plural(types: type) -> str:
    """The plural of a single type's name.

    >>> _plural(str)
    'strings'
    """
    return _describe(types).split(" ", 1)[1] + "s"


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", str: "a string", int: "a number", float: "a number",
             list: "an array", dict: "an object", type(None): "null"}
    # json.loads makes only those seven types, so the default is never the answer
    return names.get(type(value), "a value")  # pragma: no mutate


def require_utf8(text: str, what: str, code: str = "invalid_request") -> str:
    """``text``, if it has a UTF-8 form: JSON may carry a lone surrogate (``"\\ud800"``),
    which no file name, argument or gRPC string can hold.

    >>> require_utf8("é", "a path")
    'é'
    >>> require_utf8("\\ud800", "a path")
    Traceback (most recent call last):
    ...
    sandcell_gateway.errors.BadRequest: a path must be valid Unicode (a lone surrogate is not)
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{what} must be valid Unicode (a lone surrogate is not)",
                         code=code) from None
    return text
