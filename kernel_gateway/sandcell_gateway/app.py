"""``make_app``: every route of the gateway in one Tornado application."""

from __future__ import annotations

import tornado.web

from . import handlers
from .base import Deps, FallbackHandler


def make_app(deps: Deps) -> tornado.web.Application:
    """Sandbox routes (``/api/v1``); a JSON 404 for anything else."""
    routes = [*handlers.ROUTES]
    return tornado.web.Application(
        [(pattern, handler, {"deps": deps}) for pattern, handler in routes],
        default_handler_class=FallbackHandler, default_handler_args={"deps": deps})
