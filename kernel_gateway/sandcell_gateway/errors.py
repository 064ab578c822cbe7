"""Errors the gateway turns into JSON responses ``{"error": {"code", "message"}}``.

Services raise these; the one ``BaseHandler.write_error`` (base.py) serialises them, so no
handler builds an error body by hand.
"""

from __future__ import annotations

import math


class GatewayError(Exception):
    """An error with an HTTP status and a stable machine-readable code."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class BadRequest(GatewayError):
    status = 400
    code = "invalid_request"


class Unauthorized(GatewayError):
    status = 401
    code = "unauthorized"


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class Forbidden(GatewayError):
    status = 403
    code = "permission_denied"


class Conflict(GatewayError):
    status = 409
    code = "conflict"


class PayloadTooLarge(GatewayError):
    status = 413
    code = "body_too_large"


class TooManyRequests(GatewayError):
    """A tenant's rate or a sandbox cap refused the request; nothing was changed.

    ``retry_after`` (whole seconds, at least 1) becomes the ``Retry-After`` header.
    """

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = max(1, math.ceil(retry_after))


class ServiceUnavailable(GatewayError):
    status = 503
    code = "pool_exhausted"


class BackendUnavailable(ServiceUnavailable):
    code = "backend_unavailable"


class KernelDied(GatewayError):
    """The sandbox's kernel or container went away; the sandbox is unusable."""

    status = 409
    code = "kernel_died"


class InsufficientStorage(GatewayError):
    """The sandbox's workspace (or /tmp) is full; nothing partial was left behind."""

    status = 507
    code = "insufficient_storage"
