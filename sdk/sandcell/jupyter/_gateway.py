"""The gateway's Jupyter REST routes, as the provisioner needs them, with errors that say
what to fix in the terminal of nbval, papermill or ``jupyter console``.

The gateway and token are found exactly as ``sandcell.Client()`` finds them
(:class:`sandcell._config.ClientConfig`): ``SANDCELL_URL``/``SANDCELL_TOKEN``, then the runtime
file of a gateway on this machine, then ``http://127.0.0.1:8765``.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any
from urllib.parse import quote

import httpx

from .._config import DEFAULT_TIMEOUT, ClientConfig
from .._core import default_headers, error_from_response, json_object, transport_errors
from .._exceptions import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    NotFoundError,
    RateLimitError,
    SandcellError,
    ServiceUnavailableError,
)

__all__ = ["GatewayKernels", "KernelStartError", "start_error"]


class KernelStartError(SandcellError, RuntimeError):
    """A Sandcell kernel could not start; the message says what to change.

    >>> issubclass(KernelStartError, RuntimeError)
    True
    """


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """httpx's default context, built once: loading the CA bundle took 33 ms of every start."""
    return httpx.create_ssl_context()


class GatewayKernels:
    """``/api/kernels`` on one gateway: claim, interrupt, inspect, delete (async, one loop)."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._http = httpx.AsyncClient(base_url=config.base_url, headers=default_headers(config.token),
                                       timeout=DEFAULT_TIMEOUT.as_httpx(), verify=_ssl_context())

    def channels_url(self, kernel_id: str, session_id: str) -> str:
        """The kernel's channels WebSocket URL (``ws://``/``wss://``)."""
        scheme, rest = self.config.base_url.split("://", 1)
        ws = "wss" if scheme == "https" else "ws"
        return f"{ws}://{rest}/api/kernels/{quote(kernel_id)}/channels?session_id={quote(session_id)}"

    def headers(self) -> dict[str, str]:
        return default_headers(self.config.token)

    async def claim(self, template: str, env: dict[str, str]) -> str:
        """A warm sandbox of ``template``'s pool, as a kernel id."""
        model = await self._request("POST", "/api/kernels", json={"name": template, "env": env})
        kernel_id = model.get("id")
        if not isinstance(kernel_id, str):
            raise SandcellError(f"the gateway's kernel model has no id: {model!r}")
        return kernel_id

    async def state(self, kernel_id: str) -> str:
        """The kernel's execution state; ``dead`` when the gateway no longer has it."""
        try:
            model = await self._request("GET", f"/api/kernels/{quote(kernel_id)}")
        except NotFoundError:
            return "dead"
        return str(model.get("execution_state", "unknown"))

    async def interrupt(self, kernel_id: str) -> None:
        await self._request("POST", f"/api/kernels/{quote(kernel_id)}/interrupt")

    async def delete(self, kernel_id: str) -> None:
        """Destroy the sandbox; one already gone is fine."""
        try:
            await self._request("DELETE", f"/api/kernels/{quote(kernel_id)}")
        except NotFoundError:
            pass

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        with transport_errors(self.config.base_url):
            response = await self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise error_from_response(response)
        return {} if response.status_code == 204 or not response.content else json_object(response)


def start_error(exc: SandcellError, spec: str, template: str, url: str) -> KernelStartError:
    """The error jupyter_client shows for a kernel that could not start, with what to fix."""
    head = f"cannot start kernel {spec!r} (Sandcell template {template!r}) on the gateway at {url}"
    return KernelStartError(f"{head}: {_cause(exc, template)}")


def _cause(exc: SandcellError, template: str) -> str:
    if isinstance(exc, APIConnectionError):
        return (f"{exc}" if "sandcell serve" in str(exc) else
                f"{exc} Start one with `sandcell serve`, or set SANDCELL_URL to a running gateway.")
    if not isinstance(exc, APIStatusError):
        return str(exc)
    if isinstance(exc, AuthenticationError):
        return (f"the gateway refused the token ({exc.status_code} {exc.code}: {exc.message}). "
                "Set SANDCELL_TOKEN to the token the gateway printed at start, or unset it to use "
                "the token a gateway on this machine wrote to its runtime file.")
    if isinstance(exc, NotFoundError):
        return (f"the gateway has no template {template!r} ({exc.message}). Install kernelspecs "
                "for the gateway's templates with `sandcell kernelspec install`, or add "
                f"[templates.{template}] to the gateway's config.")
    if isinstance(exc, (ServiceUnavailableError, RateLimitError)):
        return (f"no sandbox of template {template!r} could be claimed ({exc.status_code} "
                f"{exc.code}: {exc.message}). Shut down other kernels of this template, raise "
                "the template's max_total (or your tenant's limits) in the gateway's config, "
                "or retry later.")
    return str(exc)
