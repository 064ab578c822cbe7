"""The OpenAPI 3.1 document served at ``/api/v1/openapi.json``.

tests/gateway/test_openapi.py keeps it in step with ``handlers.ROUTES``.
"""

from __future__ import annotations

from typing import Any

from . import __version__

_ERROR = {"$ref": "#/components/schemas/Error"}
_SANDBOX = {"$ref": "#/components/schemas/Sandbox"}
_ID_PARAM = {"name": "sandbox_id", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": "^sbx_[0-9a-f]{16}$"}}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                           "request_id": {"type": "string"}}}},
    },
    "Sandbox": {
        "type": "object",
        "required": ["id", "template", "state", "created_at", "expires_at", "metadata"],
        "properties": {
            "id": {"type": "string"}, "template": {"type": "string"},
            "state": {"type": "string", "enum": ["running", "busy", "dead"]},
            "created_at": {"type": "string", "format": "date-time"},
            "expires_at": {"type": "string", "format": "date-time"},
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}}},
    },
    "CreateSandbox": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "template": {"type": "string", "default": "python"},
            "timeout": {"type": "number", "minimum": 1, "description": "time to live, seconds"},
            "env": {"type": "object", "additionalProperties": {"type": "string"}},
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}}},
    },
    "Execute": {
        "type": "object", "additionalProperties": False, "required": ["code"],
        "properties": {"code": {"type": "string"},
                       "timeout": {"type": ["number", "null"], "exclusiveMinimum": 0}},
    },
    "ExecutionEvent": {
        "type": "object", "required": ["seq", "msg_type", "content"],
        "properties": {"seq": {"type": "integer"}, "msg_type": {"type": "string"},
                       "content": {"type": "object"}},
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_ERROR, "error") for s in (401, *statuses)}


def _op(summary: str, responses: dict[str, Any], body: str | None = None,
        by_id: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if body:
        op["requestBody"] = {"required": body == "Execute", "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{body}"}}}}
    if by_id:
        op["parameters"] = [_ID_PARAM]
    return op


def _paths() -> dict[str, Any]:
    no_content = {"204": {"description": "done"}}
    stream = {"200": {"description": "NDJSON stream of execution events", "content": {
        "application/x-ndjson": {"schema": {"$ref": "#/components/schemas/ExecutionEvent"}}}}}
    return {
        "/api/v1/health": {"get": {"summary": "Gateway and pool status", "security": [],
                                   "responses": {"200": _json({"type": "object"}, "status")}}},
        "/api/v1/openapi.json": {"get": {"summary": "This document", "security": [],
                                         "responses": {"200": _json({"type": "object"}, "doc")}}},
        "/api/v1/sandboxes": {
            "get": _op("List sandboxes", {"200": _json({"type": "object", "properties": {
                "sandboxes": {"type": "array", "items": _SANDBOX}}}, "sandboxes")} | _errors()),
            "post": _op("Claim a warm sandbox", {"201": _json(_SANDBOX, "claimed")}
                        | _errors(400, 413, 503), body="CreateSandbox")},
        "/api/v1/sandboxes/{sandbox_id}": {
            "get": _op("Describe a sandbox", {"200": _json(_SANDBOX, "sandbox")} | _errors(404),
                       by_id=True),
            "delete": _op("Destroy a sandbox", no_content | _errors(404), by_id=True)},
        "/api/v1/sandboxes/{sandbox_id}/execute": {
            "post": _op("Run code, streaming events", stream | _errors(400, 404, 409, 413),
                        body="Execute", by_id=True)},
        "/api/v1/sandboxes/{sandbox_id}/interrupt": {
            "post": _op("Interrupt the running cell", no_content | _errors(404, 409),
                        by_id=True)},
        "/api/v1/sandboxes/{sandbox_id}/restart": {
            "post": _op("Swap in a fresh kernel", {"200": _json(_SANDBOX, "sandbox")}
                        | _errors(404, 503), by_id=True)},
    }


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Sandcell gateway", "version": __version__,
                 "description": "Warm, hardened Jupyter kernels as sandboxes. See docs/api.md."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"}}},
    }
