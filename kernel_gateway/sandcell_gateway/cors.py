"""CORS: which browser pages may read the gateway's answers (``[gateway.cors]``).

The policy only computes headers; ``BaseHandler`` sets them, on every answer (errors
included, so a page can read a 401 or 429) and on preflights (``OPTIONS``).
"""

from __future__ import annotations

from collections.abc import Sequence

from .config import CorsConfig


class CorsPolicy:
    """The CORS headers for one request's ``Origin``; none while CORS is off (the default).

    >>> policy = CorsPolicy(CorsConfig(allow_origin=("https://app.example.com",)))
    >>> policy.response_headers("https://app.example.com")["Access-Control-Allow-Origin"]
    'https://app.example.com'
    >>> policy.response_headers("https://elsewhere.example")
    {'Vary': 'Origin'}
    >>> CorsPolicy().response_headers("https://app.example.com")
    {}
    """

    def __init__(self, config: CorsConfig = CorsConfig()) -> None:
        self.config = config
        self._origins = frozenset(config.allow_origin)
        self._any = "*" in self._origins

    @property
    def enabled(self) -> bool:
        return bool(self._origins)

    def allows(self, origin: str | None) -> bool:
        """True for an ``Origin`` the config lists (browsers send it lower case)."""
        return bool(origin) and (self._any or str(origin).lower() in self._origins)

    def response_headers(self, origin: str | None) -> dict[str, str]:
        """For every answer. ``Vary: Origin`` goes on all of them once CORS is on, allowed
        origin or not: the answer depends on the ``Origin``, and a shared cache must not hand
        one origin's answer to another (Fetch standard, "CORS protocol and HTTP caches")."""
        if not self.enabled:
            return {}
        headers = {"Vary": "Origin"}
        if not self.allows(origin):
            return headers
        headers["Access-Control-Allow-Origin"] = "*" if self._any else str(origin)
        if self.config.allow_credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        if self.config.expose_headers:
            headers["Access-Control-Expose-Headers"] = ", ".join(self.config.expose_headers)
        return headers

    def preflight_headers(self, origin: str | None, methods: Sequence[str]) -> dict[str, str]:
        """Added to a preflight's answer: what the page may send. ``methods`` are the route's
        own, unless ``allow_methods`` replaces them. The browser, not the gateway, checks
        the request against these, so nothing is refused here."""
        if not self.allows(origin):
            return {}
        headers = {"Access-Control-Allow-Methods": ", ".join(self.config.allow_methods or methods),
                   "Access-Control-Max-Age": str(self.config.max_age)}
        if self.config.allow_headers:
            headers["Access-Control-Allow-Headers"] = ", ".join(self.config.allow_headers)
        return headers
