from __future__ import annotations

import re

from sandcell_gateway import handlers
from sandcell_gateway.openapi import openapi_document
from sandcell_gateway.plugins import handlers as plugin_handlers

ROUTES = [*handlers.ROUTES, *plugin_handlers.ROUTES]
# The path parameter each route prefix names, in the OpenAPI document.
PARAMETERS = {"/api/v1/sandboxes/": "{sandbox_id}", "/api/v1/plugins/": "{name}",
              "/api/v1/calculate/": "{operation}"}


def _as_openapi(pattern: str) -> str:
    param = next((name for prefix, name in PARAMETERS.items() if pattern.startswith(prefix)), "")
    return re.sub(r"\(\[\^/\]\+\)", param, pattern)


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
                 "/api/v1/plugins/{name}/invoke", "/api/v1/calculate/{operation}"]:
        response = paths[path]["post"]["responses"]["429"]
        assert response["headers"]["Retry-After"]["schema"]["minimum"] == 1, path
