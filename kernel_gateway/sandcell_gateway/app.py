"""``make_app``: every route of the gateway in one Tornado application."""

from __future__ import annotations

import tornado.web

from . import commands_handlers, e2b, files_handlers, handlers, jupyter_api
from .base import Deps, FallbackHandler
from .ops.logs import log_request
from .plugins import handlers as plugin_handlers


def make_app(deps: Deps) -> tornado.web.Application:
    """Sandbox and plugin routes (``/api/v1``), Jupyter routes (``/api``), the E2B SDK's
    (``/e2b``, unless ``[gateway.e2b] enabled = false``); a JSON 404 for anything else."""
    routes = [*handlers.ROUTES, *files_handlers.ROUTES, *commands_handlers.ROUTES,
              *plugin_handlers.ROUTES, *jupyter_api.ROUTES,
              *(e2b.ROUTES if deps.e2b.enabled else [])]
    return tornado.web.Application(
        [(pattern, handler, {"deps": deps}) for pattern, handler in routes],
        default_handler_class=FallbackHandler, default_handler_args={"deps": deps},
        log_function=log_request)
