"""The OpenAPI 3.1 document served at ``/api/v1/openapi.json``.

tests/gateway/test_openapi.py keeps it in step with ``handlers.ROUTES``.
"""

from __future__ import annotations

import copy
from typing import Any

from . import __version__
from .validation import ENV_NAME, ENV_VALUE, MAX_SECONDS

_ERROR = {"$ref": "#/components/schemas/Error"}
_SANDBOX = {"$ref": "#/components/schemas/Sandbox"}
# seconds, as validation.py checks them (positive, at most 30 days, null: no timeout)
_TIMEOUT = {"type": ["number", "null"], "minimum": 0.001, "maximum": MAX_SECONDS}
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
            "timeout": {"type": "number", "minimum": 1, "maximum": MAX_SECONDS,
                        "description": "time to live, seconds"},
            "env": {"type": "object",
                    "propertyNames": {"pattern": f"^{ENV_NAME.pattern}$"},
                    "additionalProperties": {"type": "string",
                                             "pattern": f"^{ENV_VALUE.pattern}$"},
                    "description": "environment variables for the kernel"},
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}}},
    },
    "Execute": {
        "type": "object", "additionalProperties": False, "required": ["code"],
        "properties": {"code": {"type": "string"}, "timeout": _TIMEOUT},
    },
    "ExecutionEvent": {
        "type": "object", "required": ["seq", "msg_type", "content"],
        "properties": {"seq": {"type": "integer"}, "msg_type": {"type": "string"},
                       "content": {"type": "object"}},
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# 429 carries Retry-After; its codes say which limit (docs/api.md, "Tenants and limits").
_TOO_MANY = _json(_ERROR, "rate_limited, tenant_sandbox_limit or gateway_sandbox_limit") | {
    "headers": {"Retry-After": {"description": "seconds to wait before retrying",
                                "schema": {"type": "integer", "minimum": 1}}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _TOO_MANY if s == 429 else _json(_ERROR, "error") for s in (401, *statuses)}


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
        "/api/v1/health": {"get": {"summary": "Gateway status (ok, or degraded while Docker is "
                                              "unreachable), Docker reachability (docker), sandbox "
                                              "pools (pools) and plugin worker pools (plugins)", "security": [],
                                   "responses": {"200": _json({"type": "object"}, "status")}}},
        "/api/v1/openapi.json": {"get": {"summary": "This document", "security": [],
                                         "responses": {"200": _json({"type": "object"}, "doc")}}},
        "/api/v1/sandboxes": {
            "get": _op("List sandboxes", {"200": _json({"type": "object", "properties": {
                "sandboxes": {"type": "array", "items": _SANDBOX}}}, "sandboxes")} | _errors()),
            "post": _op("Claim a warm sandbox", {"201": _json(_SANDBOX, "claimed")}
                        | _errors(400, 409, 413, 429, 503), body="CreateSandbox")},
        "/api/v1/sandboxes/{sandbox_id}": {
            "get": _op("Describe a sandbox", {"200": _json(_SANDBOX, "sandbox")} | _errors(404),
                       by_id=True),
            "delete": _op("Destroy a sandbox", no_content | _errors(404, 503), by_id=True)},
        "/api/v1/sandboxes/{sandbox_id}/execute": {
            "post": _op("Run code, streaming events", stream | _errors(400, 404, 409, 413, 429),
                        body="Execute", by_id=True)},
        "/api/v1/sandboxes/{sandbox_id}/interrupt": {
            "post": _op("Interrupt the running cell", no_content | _errors(404, 409),
                        by_id=True)},
        "/api/v1/sandboxes/{sandbox_id}/notebook": {
            "get": _op("The session's history as a Jupyter notebook (nbformat 4.5)",
                       {"200": _json({"type": "object", "required": ["nbformat", "cells"]},
                                     "notebook")} | _errors(404), by_id=True)},
        "/api/v1/sandboxes/{sandbox_id}/restart": {
            "post": _op("Swap in a fresh kernel", {"200": _json(_SANDBOX, "sandbox")}
                        | _errors(404, 409, 503), by_id=True)},
    }


_PLUGIN = {"$ref": "#/components/schemas/Plugin"}
_NAME_PARAM = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_OPERATION_PARAM = {"name": "operation", "in": "path", "required": True,
                    "schema": {"type": "string", "enum": ["add", "multiply", "subtract"]}}
SCHEMAS.update({
    "Plugin": {
        "type": "object",
        "required": ["name", "version", "versions", "language", "input_schema", "output_schema"],
        "properties": {
            "name": {"type": "string"}, "version": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "language": {"type": "string"}, "description": {"type": "string"},
            "image": {"type": "string"},
            "isolation": {"type": "string", "enum": ["per_call", "per_tenant", "shared"]},
            "max_invocations": {"type": "integer", "minimum": 1},
            "max_age": {"type": "number", "exclusiveMinimum": 0},
            "timeout": {"type": ["number", "null"]},
            "input_schema": {"type": "object"}, "output_schema": {"type": "object"},
            "pool": {"type": "object"}},
    },
    "Invoke": {
        "type": "object", "additionalProperties": False, "required": ["input"],
        "properties": {"input": {"type": "object", "description": "checked against the "
                                 "plugin's input_schema"},
                       "timeout": _TIMEOUT},
    },
    "PluginEvent": {
        "type": "object", "required": ["seq", "msg_type", "content"],
        "properties": {"seq": {"type": "integer"},
                       "msg_type": {"enum": ["started", "progress", "log", "completed", "failed"]},
                       "content": {"type": "object"}},
    },
    "Operands": {
        "type": "object", "required": ["operand1", "operand2"], "additionalProperties": False,
        "properties": {"operand1": {"type": "number"}, "operand2": {"type": "number"}},
    },
    "CalculatorResult": {
        "type": "object", "required": ["result", "operation", "operand1", "operand2"],
        "properties": {"result": {"type": "number"}, "operation": {"type": "string"},
                       "operand1": {"type": "number"}, "operand2": {"type": "number"}},
    },
})


def _plugin_op(summary: str, responses: dict[str, Any], param: dict[str, Any] | None = None,
               body: str | None = None) -> dict[str, Any]:
    op = _op(summary, responses, body=body)
    if body:
        op["requestBody"]["required"] = True
    if param:
        op["parameters"] = [param]
    return op


def _plugin_paths() -> dict[str, Any]:
    """The plugin runtime (docs/plugins.md) and the original calculator API."""
    stream = {"200": {"description": "NDJSON stream of plugin events", "content": {
        "application/x-ndjson": {"schema": {"$ref": "#/components/schemas/PluginEvent"}}}}}
    return {
        "/api/v1/plugins": {"get": _plugin_op("List plugins", {"200": _json({
            "type": "object", "properties": {"plugins": {"type": "array", "items": _PLUGIN}}},
            "plugins")} | _errors(404))},
        "/api/v1/plugins/{name}": {"get": _plugin_op(
            "Describe a plugin: versions and schemas", {"200": _json(_PLUGIN, "plugin")}
            | _errors(404), _NAME_PARAM)},
        "/api/v1/plugins/{name}/invoke": {"post": _plugin_op(
            "Invoke a plugin on a fresh warm worker, streaming progress then the result",
            stream | _errors(400, 404, 413, 429, 503), _NAME_PARAM, body="Invoke")},
        "/api/v1/calculate/{operation}": {"post": _plugin_op(
            "The original platform's calculator (add/multiply/subtract plugins)",
            {"200": _json({"$ref": "#/components/schemas/CalculatorResult"}, "result")}
            | _errors(400, 404, 429, 502, 503, 504), _OPERATION_PARAM, body="Operands")},
    }


def openapi_document(templates: list[str] | None = None,
                     plugins: list[str] | None = None) -> dict[str, Any]:
    """The document; given this gateway's template and plugin names, it lists them as enums,
    so a client (or a fuzzer) knows which values the gateway accepts."""
    schemas = copy.deepcopy(SCHEMAS)
    paths = _paths() | _plugin_paths()
    if templates:
        schemas["CreateSandbox"]["properties"]["template"]["enum"] = templates
    if plugins:
        for path in ("/api/v1/plugins/{name}", "/api/v1/plugins/{name}/invoke"):
            for operation in paths[path].values():
                operation["parameters"] = [{**_NAME_PARAM, "schema": {
                    "type": "string", "enum": plugins}}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Sandcell gateway", "version": __version__,
                 "description": "Warm, hardened Jupyter kernels as sandboxes. See docs/api.md."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"}}},
    }
