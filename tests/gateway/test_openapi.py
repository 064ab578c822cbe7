from __future__ import annotations

import json
import re

import tornado.web
import yaml
from openapi_spec_validator import validate

from sandcell_gateway import commands_handlers, files_handlers, handlers, jupyter_api
from sandcell_gateway.openapi import jupyter_document, jupyter_swagger, openapi_document
from sandcell_gateway.plugins import handlers as plugin_handlers

ROUTES = [*handlers.ROUTES, *files_handlers.ROUTES, *commands_handlers.ROUTES,
          *plugin_handlers.ROUTES]
# The path parameter each route prefix names, in the OpenAPI document.
PARAMETERS = {"/api/v1/sandboxes/": "{sandbox_id}", "/api/v1/plugins/": "{name}",
              "/api/v1/calculate/": "{operation}"}


def _as_openapi(pattern: str) -> str:
    param = next((name for prefix, name in PARAMETERS.items() if pattern.startswith(prefix)), "")
    # a second parameter is a command's (/api/v1/sandboxes/{sandbox_id}/commands/{command_id})
    path = re.sub(r"\(\[\^/\]\+\)", param, pattern, count=1)
    return re.sub(r"\(\[\^/\]\+\)", "{command_id}", path)


def test_document_lists_exactly_the_served_routes() -> None:
    served = {_as_openapi(pattern) for pattern, _ in ROUTES}
    assert set(openapi_document()["paths"]) == served


def test_every_operation_has_a_handler_method() -> None:
    handlers = {_as_openapi(pattern): handler for pattern, handler in ROUTES}
    for path, operations in openapi_document()["paths"].items():
        for method in operations:
            assert method.upper() in handlers[path].SUPPORTED_METHODS
            assert getattr(handlers[path], method) is not getattr(
                handlers[path].__mro__[-2], method, None), f"{method} {path} not implemented"


def test_document_lists_the_gateways_templates_and_plugins() -> None:
    doc = openapi_document(templates=["python", "tiny"], plugins=["add_numbers"])
    create = doc["components"]["schemas"]["CreateSandbox"]["properties"]["template"]
    assert create["enum"] == ["python", "tiny"]
    invoke = doc["paths"]["/api/v1/plugins/{name}/invoke"]["post"]["parameters"][0]
    assert invoke["schema"]["enum"] == ["add_numbers"]
    assert "enum" not in openapi_document()["components"]["schemas"]["CreateSandbox"][
        "properties"]["template"]  # the module-level schemas stay untouched


def test_rate_limited_operations_document_429_with_retry_after() -> None:
    paths = openapi_document()["paths"]
    for path in ["/api/v1/sandboxes", "/api/v1/sandboxes/{sandbox_id}/execute",
                 "/api/v1/sandboxes/{sandbox_id}/commands",
                 "/api/v1/plugins/{name}/invoke", "/api/v1/calculate/{operation}"]:
        response = paths[path]["post"]["responses"]["429"]
        assert response["headers"]["Retry-After"]["schema"]["minimum"] == 1, path


# --- /api/swagger.json and .yaml: the Jupyter routes' document --------------------------------

JUPYTER_PARAMETERS = {"/api/kernelspecs/": "{kernel_name}", "/api/kernels/": "{kernel_id}",
                      "/api/sessions/": "{session_id}"}


def _as_jupyter_openapi(pattern: str) -> str:
    param = next(name for prefix, name in JUPYTER_PARAMETERS.items()
                 if pattern.startswith(prefix)) if "(" in pattern else ""
    return re.sub(r"\(\[\^/\]\+\)", param, pattern).replace("\\.", ".")


def test_both_documents_are_valid_openapi() -> None:
    validate(openapi_document(templates=["python"], plugins=["add_numbers"]))
    validate(jupyter_document())


def test_jupyter_document_lists_exactly_the_jupyter_routes_and_their_methods() -> None:
    served = {_as_jupyter_openapi(pattern): handler for pattern, handler in jupyter_api.ROUTES}
    paths = jupyter_document()["paths"]
    assert set(paths) == set(served)
    base = tornado.web.RequestHandler
    for path, operations in paths.items():
        implemented = {m for m in ("get", "post", "patch", "put", "delete")
                       if getattr(served[path], m) is not getattr(base, m)}
        assert set(operations) == implemented, path


def test_yaml_and_json_say_the_same_thing() -> None:
    as_json = json.loads(jupyter_swagger("application/json"))
    assert yaml.safe_load(jupyter_swagger("application/yaml")) == as_json == jupyter_document()
    assert "&id" not in jupyter_swagger("application/yaml")  # no YAML aliases for tools to trip on


def test_swagger_routes_need_no_token_and_the_rest_do() -> None:
    doc = jupyter_document()
    public = {path for path, ops in doc["paths"].items()
              if any(op.get("security") == [] for op in ops.values())}
    assert public == {"/api/swagger.json", "/api/swagger.yaml"}
    assert {next(iter(s)) for s in doc["security"]} == {"bearer", "token", "query_token"}
