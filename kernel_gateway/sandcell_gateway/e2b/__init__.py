"""E2B's own SDK on Sandcell: E2B's control plane, envd and code interpreter, translated.

Point the unmodified ``e2b`` / ``e2b-code-interpreter`` SDKs at a gateway with
``E2B_API_URL=<gateway>/e2b/api``, ``E2B_SANDBOX_URL=<gateway>/e2b/sbx`` and
``E2B_API_KEY=<a Sandcell tenant token>`` (docs/e2b.md). Every handler here is a translator
over the gateway's own services (sandboxes, files, commands, execute); none does the work.

- :mod:`.control`: ``/e2b/api`` (create, get, list, kill, set timeout, connect);
- :mod:`.envd`: ``/e2b/sbx`` port 49983 (Connect-RPC ``process`` and ``filesystem``,
  ``/files``, ``/health``), with :mod:`.connect` the codec;
- :mod:`.interpreter`: ``/e2b/sbx`` port 49999 (``/execute``, ``/contexts``).

These routes are not in the gateway's OpenAPI document: their contract is E2B's
(e2b-dev/E2B ``spec/``), pinned by the SDK versions in docs/e2b.md.
"""

from __future__ import annotations

from ..base import BaseHandler
from ..errors import NotFound
from . import control, envd, interpreter
from .base import E2BHandler


class E2BFallbackHandler(E2BHandler):
    """An unknown ``/e2b`` route: 404 in E2B's shape, which the SDK can read (it fails on
    Sandcell's own ``{"error": ...}``)."""

    public = True

    def prepare(self) -> None:
        super().prepare()
        raise NotFound(f"no route {self.request.method} {self.request.path} on Sandcell's "
                       "E2B surface (docs/e2b.md)")


ROUTES: list[tuple[str, type[BaseHandler]]] = [*control.ROUTES, *envd.ROUTES,
                                               *interpreter.ROUTES,
                                               (r"/e2b/.*", E2BFallbackHandler)]

__all__ = ["ROUTES"]
