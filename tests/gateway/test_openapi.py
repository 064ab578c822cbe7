from __future__ import annotations

import re

from sandcell_gateway.handlers import ROUTES
from sandcell_gateway.openapi import openapi_document


def _as_openapi(pattern: str) -> str:
    return re.sub(r"\(\[\^/\]\+\)", "{sandbox_id}", pattern)


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
