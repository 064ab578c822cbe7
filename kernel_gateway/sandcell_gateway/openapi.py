"""The OpenAPI 3.1 documents: ``/api/v1/openapi.json`` for Sandcell's own routes, and
``/api/swagger.json`` (and ``.yaml``) for the Jupyter routes, where tools written for Jupyter
Kernel Gateway look for it.

tests/gateway/test_openapi.py keeps them in step with the route tables.
"""

from __future__ import annotations

import copy
import functools
import json
import signal
from typing import Any

import yaml

from . import __version__
from .validation import ENV_NAME, ENV_VALUE, MAX_SECONDS
from .wire import COMMAND_ID_PATTERN, SANDBOX_ID_PATTERN

_ERROR = {"$ref": "#/components/schemas/Error"}
_SANDBOX = {"$ref": "#/components/schemas/Sandbox"}
# seconds, as validation.py checks them (positive, at most 30 days, null: no timeout)
_TIMEOUT = {"type": ["number", "null"], "minimum": 0.001, "maximum": MAX_SECONDS}
_ID_PARAM = {"name": "sandbox_id", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": SANDBOX_ID_PATTERN}}

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


_FILE = {"$ref": "#/components/schemas/FileInfo"}
_PATH_PARAM = {"name": "path", "in": "query", "required": True, "schema": {"type": "string"},
               "description": "workspace-relative, or absolute inside /home/sandbox or /tmp"}
SCHEMAS.update({
    "FileInfo": {
        "type": "object", "required": ["name", "path", "type", "size", "modified"],
        "properties": {
            "name": {"type": "string"}, "path": {"type": "string"},
            "type": {"type": "string", "enum": ["file", "dir", "symlink", "other"]},
            "size": {"type": "integer"}, "modified": {"type": "number"}}},
    "Rename": {
        "type": "object", "required": ["source", "destination"],
        "properties": {"source": {"type": "string"}, "destination": {"type": "string"},
                       "overwrite": {"type": "boolean", "default": False}}},
})


def _file_op(summary: str, responses: dict[str, Any], *extra: dict[str, Any],
             path: bool = True) -> dict[str, Any]:
    op = _op(summary, responses | _errors(400, 403, 404, 409, 429), by_id=True)
    op["parameters"] += ([_PATH_PARAM] if path else []) + list(extra)
    return op


def _file_paths() -> dict[str, Any]:
    """Files in a sandbox, through its agent (docs/api.md, "Files")."""
    octets = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    recursive = {"name": "recursive", "in": "query", "schema": {"type": "boolean"}}
    listed = _json({"type": "object", "properties": {"files": {"type": "array",
                                                               "items": _FILE}}}, "entries")
    upload = _file_op("Write the body to the file (atomic; parents made)",
                      {"200": _json(_FILE, "written")} | _errors(413, 507))
    upload["requestBody"] = {"required": True, "content": octets}
    rename = _file_op("Rename a file or directory", {"200": _json(_FILE, "renamed")},
                      path=False)
    rename["requestBody"] = {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Rename"}}}}
    prefix = "/api/v1/sandboxes/{sandbox_id}/files"
    return {
        prefix: {"get": _file_op("Read a file (streamed)", {"200": {
                     "description": "the file's bytes", "content": octets}}),
                 "put": upload,
                 "delete": _file_op("Remove a file, or a directory (recursive=true if not "
                                    "empty)", {"204": {"description": "removed"}}, recursive)},
        f"{prefix}/list": {"get": _file_op("List a directory", {"200": listed}, _PATH_PARAM | {
            "required": False, "description": "default: the workspace"}, path=False)},
        f"{prefix}/stat": {"get": _file_op("Describe a file", {"200": _json(_FILE, "info")})},
        f"{prefix}/mkdir": {"post": _file_op("Make a directory (and its parents)",
                                             {"201": _json(_FILE, "made")})},
        f"{prefix}/rename": {"post": rename},
    }


_COMMAND = {"$ref": "#/components/schemas/Command"}
_COMMAND_ID_PARAM = {"name": "command_id", "in": "path", "required": True,
                     "schema": {"type": "string", "pattern": COMMAND_ID_PATTERN}}
# as validation.py checks them: no NUL in a command, an argument or a cwd
_TEXT_NO_NUL = {"type": "string", "pattern": "^[^\\x00]*$"}
SCHEMAS.update({
    "StartCommand": {
        "type": "object", "additionalProperties": False,
        "description": "exactly one of command and args",
        "oneOf": [{"required": ["command"], "not": {"required": ["args"]}},
                  {"required": ["args"], "not": {"required": ["command"]}}],
        "properties": {
            "command": _TEXT_NO_NUL | {"description": "run by bash -c"},
            "args": {"type": "array", "minItems": 1, "items": _TEXT_NO_NUL,
                     "description": "the program (found on PATH) and its arguments"},
            "cwd": _TEXT_NO_NUL | {"description": "a workspace path; default the workspace"},
            "env": SCHEMAS["CreateSandbox"]["properties"]["env"]
            | {"description": "added to the sandbox's env"},
            "timeout": _TIMEOUT | {"description": "seconds; then the process group is killed"},
            "stdin": {"type": "boolean", "default": False,
                      "description": "keep a stdin pipe open (else stdin is /dev/null)"},
            "background": {"type": "boolean", "default": False,
                           "description": "answer 201 at once; read the events later"}}},
    "Command": {
        "type": "object",
        "required": ["id", "command", "cwd", "pid", "background", "state", "exit_code",
                     "started_at", "finished_at"],
        "properties": {
            "id": {"type": "string"}, "command": {"type": "string"}, "cwd": {"type": "string"},
            "pid": {"type": "integer"}, "background": {"type": "boolean"},
            "state": {"type": "string", "enum": ["running", "finished"]},
            "exit_code": {"type": ["integer", "null"]},
            "started_at": {"type": "string", "format": "date-time"},
            "finished_at": {"type": ["string", "null"], "format": "date-time"}}},
    "CommandEvent": {
        "type": "object", "required": ["seq", "msg_type", "content"],
        "properties": {"seq": {"type": "integer"},
                       "msg_type": {"enum": ["started", "stream", "timeout", "exit",
                                             "gateway_error"]},
                       "content": {"type": "object"}}},
    "Stdin": {
        "type": "object", "additionalProperties": False,
        "properties": {"data": {"type": "string", "description": "text to write (UTF-8)"},
                       "close": {"type": "boolean", "default": False}}},
    "Signal": {
        "type": "object", "additionalProperties": False, "required": ["signal"],
        "properties": {"signal": {
            "description": "SIGTERM, TERM, 15, ...: sent to the command's whole process group",
            "oneOf": [{"type": "string", "enum": sorted(
                          {n for s in signal.Signals for n in (s.name, s.name[3:])})},
                      {"type": "integer", "enum": sorted({int(s) for s in signal.Signals})}]}}},
})


def _command_op(summary: str, responses: dict[str, Any], body: str | None = None,
                by_command: bool = True) -> dict[str, Any]:
    op = _op(summary, responses | _errors(400, 403, 404, 409), body=body, by_id=True)
    if body:
        op["requestBody"]["required"] = body in ("StartCommand", "Signal")
    if by_command:
        op["parameters"].append(_COMMAND_ID_PARAM)
    return op


def _command_paths() -> dict[str, Any]:
    """Commands in a sandbox, through its agent (docs/api.md, "Commands")."""
    stream = {"200": {"description": "NDJSON stream of command events", "content": {
        "application/x-ndjson": {"schema": {"$ref": "#/components/schemas/CommandEvent"}}}}}
    done = {"204": {"description": "done"}}
    prefix = "/api/v1/sandboxes/{sandbox_id}/commands"
    listed = _json({"type": "object", "properties": {"commands": {"type": "array",
                                                                  "items": _COMMAND}}}, "list")
    return {
        prefix: {
            "get": _command_op("The sandbox's running and recently finished commands",
                               {"200": listed}, by_command=False),
            "post": _command_op("Run a command: its events streamed, or (background) 201 "
                                "at once", stream | {"201": _json(_COMMAND, "started")}
                                | _errors(413, 429), body="StartCommand", by_command=False)},
        f"{prefix}/{{command_id}}": {"get": _command_op("Describe a command",
                                                        {"200": _json(_COMMAND, "command")})},
        f"{prefix}/{{command_id}}/events": {"get": _command_op(
            "The command's events from its start, then live, to its end", stream)},
        f"{prefix}/{{command_id}}/stdin": {"post": _command_op(
            "Write to the command's stdin (and close it)", done | _errors(413), body="Stdin")},
        f"{prefix}/{{command_id}}/signal": {"post": _command_op(
            "Signal the command's process group (SIGKILL kills it)", done | _errors(413),
            body="Signal")},
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
    paths = _paths() | _file_paths() | _command_paths() | _plugin_paths()
    if templates:
        schemas["CreateSandbox"]["properties"]["template"]["enum"] = templates
    if plugins:
        for path in ("/api/v1/plugins/{name}", "/api/v1/plugins/{name}/invoke"):
            for operation in paths[path].values():
                operation["parameters"] = [{**_NAME_PARAM, "schema": {
                    "type": "string", "enum": plugins}}]
    return _document("Sandcell gateway", "Warm, hardened Jupyter kernels as sandboxes. "
                     "See docs/api.md.", paths, schemas)


def _document(title: str, description: str, paths: dict[str, Any], schemas: dict[str, Any],
              schemes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The frame both documents share: Bearer auth (plus ``schemes``, any of which will do)."""
    schemes = {"bearer": {"type": "http", "scheme": "bearer"}, **(schemes or {})}
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": __version__, "description": description},
        "servers": [{"url": "/"}],
        "security": [{name: []} for name in schemes],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": schemes},
    }


# --- The Jupyter routes (jupyter_api.ROUTES; docs/jupyter.md) ---------------------------------

def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_TEXT = {"type": ["string", "null"]}  # Jupyter Server sends null for "not given"
_OBJECT = {"type": ["object", "null"]}
JUPYTER_SCHEMAS: dict[str, Any] = {
    "Error": SCHEMAS["Error"],
    "ApiVersion": {"type": "object", "required": ["version"],
                   "properties": {"version": {"type": "string"}}},
    "KernelSpec": {
        "type": "object", "required": ["name", "spec", "resources"],
        "properties": {
            "name": {"type": "string", "description": "the template's name"},
            "resources": {"type": "object"},
            "spec": {"type": "object", "required": ["argv", "display_name", "language"],
                     "properties": {
                         "argv": {"type": "array", "items": {"type": "string"}},
                         "env": {"type": "object", "additionalProperties": {"type": "string"}},
                         "display_name": {"type": "string"}, "language": {"type": "string"},
                         "interrupt_mode": {"type": "string", "enum": ["message", "signal"]},
                         "metadata": {"type": "object"}}}},
    },
    "KernelSpecs": {
        "type": "object", "required": ["default", "kernelspecs"],
        "properties": {"default": {"type": "string"}, "kernelspecs": {
            "type": "object", "additionalProperties": _ref("KernelSpec")}},
    },
    "Kernel": {
        "type": "object",
        "required": ["id", "name", "last_activity", "execution_state", "connections"],
        "properties": {
            "id": {"type": "string", "description": "the sandbox's id, hyphenated "
                   "(sbx_0123456789abcdef is sbx-0123-4567-89ab-cdef)"},
            "name": {"type": "string", "description": "the kernelspec (template)"},
            "last_activity": {"type": "string", "format": "date-time"},
            "execution_state": {"type": "string"},
            "connections": {"type": "integer", "minimum": 0}},
    },
    "StartKernel": {
        "type": "object", "description": "unknown fields are ignored, as Jupyter Server does",
        "properties": {"name": _TEXT | {"description": "kernelspec; default python"},
                       "env": _OBJECT | {"description": "only KERNEL_* variables are used"}},
    },
    "Session": {
        "type": "object", "required": ["id", "path", "name", "type", "kernel"],
        "properties": {
            "id": {"type": "string"}, "path": {"type": "string"}, "name": {"type": "string"},
            "type": {"type": "string"}, "kernel": _ref("Kernel"),
            "notebook": {"type": "object", "properties": {
                "path": {"type": "string"}, "name": {"type": "string"}}}},
    },
    "SessionRequest": {
        "type": "object", "description": "unknown fields are ignored, as Jupyter Server does",
        "properties": {
            "path": _TEXT, "name": _TEXT, "type": _TEXT,
            "kernel": _OBJECT | {"description": "id: an existing kernel; else name (and env) "
                                 "of one to start", "properties": {
                                     "id": _TEXT, "name": _TEXT, "env": _OBJECT}},
            "notebook": _OBJECT | {"properties": {"path": _TEXT, "name": _TEXT}}},
    },
}
_KERNEL_ID = {"name": "kernel_id", "in": "path", "required": True, "schema": {"type": "string"},
              "description": "sbx-0123-4567-89ab-cdef, or the sandbox id sbx_0123456789abcdef"}
_JUPYTER_PARAMS = {
    "kernel_id": _KERNEL_ID,
    "kernel_name": {"name": "kernel_name", "in": "path", "required": True,
                    "schema": {"type": "string"}},
    "session_id": {"name": "session_id", "in": "path", "required": True,
                   "schema": {"type": "string"}},
}


def _jupyter_op(summary: str, responses: dict[str, Any], param: str | None = None,
                body: str | None = None) -> dict[str, Any]:
    op = _op(summary, responses, body=body)
    if param:
        op["parameters"] = [_JUPYTER_PARAMS[param]]
    return op


def _channels_op() -> dict[str, Any]:
    op = _jupyter_op("The kernel's WebSocket (Jupyter's v1.kernel.websocket.jupyter.org "
                     "protocol, or the legacy JSON one); docs/jupyter.md",
                     {"101": {"description": "switching to the WebSocket"}}
                     | _errors(400, 404, 409), "kernel_id")
    op["parameters"].append({"name": "session_id", "in": "query", "required": False,
                             "schema": {"type": "string"}})
    return op


def _kernel_paths() -> dict[str, Any]:
    kernel, none = _json(_ref("Kernel"), "kernel"), {"204": {"description": "done"}}
    return {
        "/api/kernels": {
            "get": _jupyter_op("List the tenant's kernels", {"200": _json(
                {"type": "array", "items": _ref("Kernel")}, "kernels")} | _errors()),
            "post": _jupyter_op("Start a kernel: claim a warm sandbox", {"201": kernel}
                                | _errors(400, 404, 413, 429, 503), body="StartKernel")},
        "/api/kernels/{kernel_id}": {
            "get": _jupyter_op("Describe a kernel", {"200": kernel} | _errors(404), "kernel_id"),
            "delete": _jupyter_op("Shut down a kernel (destroys its sandbox)",
                                  none | _errors(404, 503), "kernel_id")},
        "/api/kernels/{kernel_id}/interrupt": {"post": _jupyter_op(
            "Interrupt the running cell", none | _errors(404, 409), "kernel_id")},
        "/api/kernels/{kernel_id}/restart": {"post": _jupyter_op(
            "Swap in a fresh warm kernel under the same id", {"200": kernel}
            | _errors(404, 409, 429, 503), "kernel_id")},
        "/api/kernels/{kernel_id}/channels": {"get": _channels_op()},
    }


def _session_paths() -> dict[str, Any]:
    session = _json(_ref("Session"), "session")
    return {
        "/api/sessions": {
            "get": _jupyter_op("List the tenant's sessions", {"200": _json(
                {"type": "array", "items": _ref("Session")}, "sessions")} | _errors()),
            "post": _jupyter_op("Create a session (or return the one with this path)",
                                {"201": session} | _errors(400, 404, 413, 429, 503),
                                body="SessionRequest")},
        "/api/sessions/{session_id}": {
            "get": _jupyter_op("Describe a session", {"200": session} | _errors(404),
                               "session_id"),
            "patch": _jupyter_op("Rename a session or change its kernel", {"200": session}
                                 | _errors(400, 404, 413, 429, 503), "session_id",
                                 body="SessionRequest"),
            "delete": _jupyter_op("Delete a session and its kernel",
                                  {"204": {"description": "done"}} | _errors(404),
                                  "session_id")},
    }


def _jupyter_paths() -> dict[str, Any]:
    def public(summary: str, media: str) -> dict[str, Any]:
        return {"get": {"summary": summary, "security": [], "responses": {"200": {
            "description": "the document", "content": {media: {"schema": {"type": "object"}}}}}}}

    specs = _json(_ref("KernelSpecs"), "kernelspecs")
    return {
        "/api": {"get": _jupyter_op("The API version", {"200": _json(
            _ref("ApiVersion"), "version")} | _errors())},
        "/api/kernelspecs": {"get": _jupyter_op("One kernelspec per template",
                                                {"200": specs} | _errors())},
        "/api/kernelspecs/{kernel_name}": {"get": _jupyter_op(
            "One kernelspec", {"200": _json(_ref("KernelSpec"), "kernelspec")} | _errors(404),
            "kernel_name")},
        **_kernel_paths(), **_session_paths(),
        "/api/swagger.json": public("This document (JSON)", "application/json"),
        "/api/swagger.yaml": public("This document (YAML)", "application/yaml"),
    }


def jupyter_document() -> dict[str, Any]:
    """The Jupyter routes' document (``/api/swagger.json``): same shapes as Jupyter Server's."""
    jupyter_auth = {
        "token": {"type": "apiKey", "in": "header", "name": "Authorization",
                  "description": "'token <t>', as Jupyter clients send it"},
        "query_token": {"type": "apiKey", "in": "query", "name": "token",
                        "description": "for WebSocket clients, which cannot set headers"}}
    return _document("Sandcell gateway: Jupyter routes", "Jupyter Server's kernels, "
                     "kernelspecs and sessions API on warm sandboxes. See docs/jupyter.md.",
                     _jupyter_paths(), copy.deepcopy(JUPYTER_SCHEMAS), jupyter_auth)


@functools.cache
def jupyter_swagger(media: str) -> str:
    """``jupyter_document()`` as ``application/json`` or ``application/yaml`` text, made once
    (the document is the same on every gateway). The YAML is made from the JSON text, so the
    two say the same thing, and shared parts are written out, not as YAML aliases."""
    text = json.dumps(jupyter_document(), indent=1)
    if media == "application/yaml":
        return str(yaml.safe_dump(json.loads(text), sort_keys=False, width=100))
    return text
