"""Request body validation: a JSON object with known, typed fields and nothing else."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from .errors import BadRequest


@dataclasses.dataclass(frozen=True)
class Field:
    """One body field: its type(s), and optional constraints."""

    types: type | tuple[type, ...]
    required: bool = False
    nullable: bool = False
    minimum: float | None = None
    items: type | None = None  # for dict fields: the type of every key and value


def parse_body(raw: bytes, fields: dict[str, Field]) -> dict[str, Any]:
    """Decode ``raw`` and check it against ``fields``; raise :class:`BadRequest` saying what
    to change."""
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object", code="invalid_json")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}; "
                         f"allowed: {', '.join(sorted(fields))}")
    for name, field in fields.items():
        _check(name, body, field)
    return body


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
    if field.items is not None and not all(_is(k, field.items) and _is(v, field.items)
                                           for k, v in value.items()):
        raise BadRequest(f"field {name!r} must map {_describe(field.items)} to "
                         f"{_describe(field.items)}")


def _is(value: Any, types: type | tuple[type, ...]) -> bool:
    # bool is an int in Python, never in JSON
    return isinstance(value, types) and not isinstance(value, bool)


def _describe(types: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "a number", float: "a number", dict: "an object"}
    options = types if isinstance(types, tuple) else (types,)
    return " or ".join(sorted({names.get(t, t.__name__) for t in options}))


def _json_type(value: Any) -> str:
    return {bool: "a boolean", str: "a string", int: "a number", float: "a number",
            list: "an array", dict: "an object", type(None): "null"}.get(type(value), "a value")
