"""The client: one connection pool to one gateway, and ``client.sessions``.

Edit ``sdk/sandcell/_async/_client.py``; ``scripts/unasync.py`` writes its sync twin
``sdk/sandcell/_sync/_client.py`` from it.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

import httpx

from .._config import DEFAULT_TIMEOUT, ClientConfig, Timeout, TimeoutTypes
from .._core import (
    SOCKET_OPTIONS,
    create_body,
    default_headers,
    error_from_response,
    health_path,
    json_object,
    sandbox_path,
    transport_errors,
)
from .._models import SandboxInfo
from ._plugins import AsyncPlugins
from ._session import AsyncSession

__all__ = ["AsyncClient", "AsyncGatewayAPI", "AsyncSessions"]


class AsyncGatewayAPI:
    """The HTTP boundary: every call to the gateway goes through here, so httpx's
    errors and the gateway's error statuses become Sandcell exceptions in one place."""

    def __init__(
        self,
        config: ClientConfig,
        timeout: Timeout,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self.base_url = config.base_url
        self.timeout = timeout
        if transport is None:
            transport = httpx.AsyncHTTPTransport(socket_options=SOCKET_OPTIONS)
        self._http = httpx.AsyncClient(
            base_url=config.base_url,
            headers=default_headers(config.token),
            timeout=timeout.as_httpx(),
            transport=transport,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        content: Any = None,
    ) -> httpx.Response:
        """Send a request and read its response; raise for transport errors and error statuses.

        ``content`` is a raw body (bytes, or an iterator of them, streamed); ``params`` the query.
        """
        with self.errors():
            response = await self._http.request(method, path, json=json, params=params, content=content)
        if response.is_error:
            raise error_from_response(response)
        return response

    def build_request(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        timeout: Timeout,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Request:
        """A request to send later with ``send_stream`` (nothing goes over the wire yet)."""
        return self._http.build_request(method, path, json=json, params=params, timeout=timeout.as_httpx())

    async def send_stream(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return its response unread, for streaming."""
        with self.errors():
            response = await self._http.send(request, stream=True)
            if response.is_error:
                await response.aread()
                await response.aclose()
                raise error_from_response(response)
        return response

    def errors(self) -> AbstractContextManager[None]:
        """A context in which httpx's network errors become ``APIConnectionError``."""
        return transport_errors(self.base_url)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()


class AsyncSessions:
    """``client.sessions``: create, fetch and list sandboxes.

    Example::

        async with sandcell.AsyncClient() as client:
            async with await client.sessions.create(template="python") as session:
                print(session.id)
            print([info.id for info in await client.sessions.list()])
    """

    def __init__(self, api: AsyncGatewayAPI) -> None:
        self._api = api

    async def create(
        self,
        template: str = "python",
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> AsyncSession:
        """Claim a warm sandbox. ``timeout`` is its time to live in seconds (gateway default: 3600),
        ``env`` is set in the kernel's ``os.environ``, ``metadata`` is free-form string pairs."""
        body = create_body(template, timeout, env, metadata)
        response = await self._api.request("POST", sandbox_path(), json=body)
        return AsyncSession(self._api, SandboxInfo.from_json(json_object(response)))

    async def get(self, sandbox_id: str) -> AsyncSession:
        """A session for an existing sandbox, e.g. one created by another process."""
        response = await self._api.request("GET", sandbox_path(sandbox_id))
        return AsyncSession(self._api, SandboxInfo.from_json(json_object(response)))

    async def list(self) -> builtins.list[SandboxInfo]:
        """Every live sandbox on the gateway."""
        response = await self._api.request("GET", sandbox_path())
        sandboxes = json_object(response).get("sandboxes") or []
        return [SandboxInfo.from_json(sandbox) for sandbox in sandboxes]


class AsyncClient:
    """A connection to a Sandcell gateway.

    With no arguments it finds its gateway from ``SANDCELL_URL``/``SANDCELL_TOKEN``,
    else from the runtime file of a gateway running on this machine, else
    ``http://127.0.0.1:8765``. Pass ``transport=httpx.MockTransport(handler)`` to
    test your own code without a gateway.

    Example::

        async with sandcell.AsyncClient() as client:
            async with await client.sessions.create() as session:
                execution = await session.execute("6*7")
                print(execution.text)  # 42
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        token: str | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        config = ClientConfig.resolve(base_url=base_url, token=token)
        self._api = AsyncGatewayAPI(config, Timeout.coerce(timeout), transport)
        self.sessions = AsyncSessions(self._api)
        self.plugins = AsyncPlugins(self._api)

    @property
    def base_url(self) -> str:
        """The gateway's URL, e.g. ``http://127.0.0.1:8765``."""
        return self._api.base_url

    @property
    def timeout(self) -> Timeout:
        """The network timeouts of every request (execute streams wait longer; see ``Timeout``)."""
        return self._api.timeout

    async def health(self) -> dict[str, Any]:
        """The gateway's ``/health`` document: status, version and pool sizes."""
        return json_object(await self._api.request("GET", health_path()))

    async def close(self) -> None:
        """Close the connection pool. Sessions are not deleted; close them first."""
        await self._api.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"
