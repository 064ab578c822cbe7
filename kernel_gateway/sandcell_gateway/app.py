"""``make_app``: every route of the gateway in one Tornado application."""

from __future__ import annotations

import tornado.web

from . import commands_handlers, files_handlers, handlers, jupyter_api
from .base import Deps, FallbackHandler
from .plugins import handlers as plugin_handlers


def make_app(deps: Deps) -> tornado.web.Application:
    """Sandbox and plugin routes (``/api/v1``), Jupyter routes (``/api``); a JSON 404 for anything else."""
    routes = [*handlers.ROUTES, *files_handlers.ROUTES, *commands_handlers.ROUTES,
              *plugin_handlers.ROUTES, *jupyter_api.ROUTES]
    return tornado.web.Application(
        [(pattern, handler, {"deps": deps}) for pattern, handler in routes],
        default_handler_class=FallbackHandler, default_handler_args={"deps": deps})
