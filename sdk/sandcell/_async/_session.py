"""One sandbox in use (``AsyncSession``) and one running execution (``AsyncExecutionStream``).

Edit ``sdk/sandcell/_async/_session.py``; ``scripts/unasync.py`` writes its sync twin
``sdk/sandcell/_sync/_session.py`` from it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from .._core import execute_body, json_object, sandbox_path, save_notebook
from .._exceptions import ExecutionError, NotFoundError
from .._models import Execution, ExecutionEvent, Result, SandboxInfo
from .._streaming import Callbacks, ExecutionAccumulator, parse_event
from ._commands import AsyncCommands
from ._files import AsyncFiles
from ._lines import AsyncResponseLines

if TYPE_CHECKING:
    from ._client import AsyncGatewayAPI

__all__ = ["AsyncExecutionStream", "AsyncSession"]


class AsyncExecutionStream:
    """A running execution: iterate its events as they happen, then take the result.

    Nothing is sent until you iterate, enter it, or call ``result()``. Leaving the
    ``with`` block closes the HTTP response. ``.execution`` is the output so far.
    ``result()`` raises ``sandcell.TimeoutError`` if the call's timeout fired and
    ``SandboxError`` if the gateway could not finish; iterating never does.

    Example::

        async with session.execute_stream("for i in range(3): print(i)") as stream:
            async for event in stream:
                if isinstance(event, sandcell.StreamEvent):
                    print("live:", event.text, end="")
            execution = await stream.result()
    """

    def __init__(self, api: AsyncGatewayAPI, request: httpx.Request) -> None:
        self._lines = AsyncResponseLines(api, request)
        self._accumulator = ExecutionAccumulator()

    @property
    def execution(self) -> Execution:
        """Everything received so far (complete once the stream is exhausted)."""
        return self._accumulator.execution

    @property
    def response(self) -> httpx.Response | None:
        """The HTTP response, once the request was sent."""
        return self._lines.response

    async def result(self) -> Execution:
        """Read the rest of the stream and return the finished ``Execution``."""
        async for _ in self:
            pass
        return self._accumulator.result()

    async def close(self) -> None:
        """Stop reading and release the connection; if the execution is still running, the
        gateway interrupts it (a client that leaves mid-stream cancels its cell)."""
        await self._lines.close()

    def __aiter__(self) -> AsyncExecutionStream:
        return self

    async def __anext__(self) -> ExecutionEvent:
        while not self._lines.finished:
            line = await self._lines.next()
            event = parse_event(line) if line is not None else None
            if event is not None:
                self._accumulator.apply(event)
                return event
        raise StopAsyncIteration

    async def __aenter__(self) -> AsyncExecutionStream:
        await self._lines.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        lines = self._lines
        state = "finished" if lines.finished else "open" if lines.started else "not started"
        return f"<{type(self).__name__} {state} {self.execution!r}>"


class AsyncSession:
    """One sandbox: a kernel of your own until you close it (or its time to live ends).

    Code that raises is data: ``execute()`` returns it as ``Execution.error``.
    ``files`` and ``commands`` reach the same sandbox (its template must run the agent:
    ``agent = true``). Leaving the ``with`` block deletes the sandbox.

    Example::

        async with await client.sessions.create(template="python") as session:
            execution = await session.execute("print('hi')\\n6*7", on_stdout=print)
            assert execution.stdout == "hi\\n" and execution.text == "42"
            failed = await session.execute("1/0")
            assert failed.error.ename == "ZeroDivisionError"
            await session.files.write("data/in.csv", "a,b\n1,2\n")
            r = await session.commands.run("wc -l data/in.csv")
            assert (r.exit_code, r.stdout) == (0, "2 data/in.csv\n")
    """

    def __init__(self, api: AsyncGatewayAPI, info: SandboxInfo) -> None:
        self._api = api
        self._info = info
        self._closed = False
        self.files = AsyncFiles(api, info.id)
        self.commands = AsyncCommands(api, info.id)

    @property
    def id(self) -> str:
        """The sandbox id, e.g. ``sbx_5f0c...``."""
        return self._info.id

    @property
    def info(self) -> SandboxInfo:
        """The sandbox as last seen (``refresh()`` fetches it again)."""
        return self._info

    async def execute(
        self,
        code: str,
        *,
        timeout: float | None = None,
        on_stdout: Callable[[str], object] | None = None,
        on_stderr: Callable[[str], object] | None = None,
        on_result: Callable[[Result], object] | None = None,
        on_error: Callable[[ExecutionError], object] | None = None,
    ) -> Execution:
        """Run ``code`` and return everything it produced; callbacks see output as it happens.

        ``timeout`` (seconds) interrupts the kernel and raises ``sandcell.TimeoutError``
        carrying the partial output. Without it the call waits as long as the code runs.
        """
        callbacks = Callbacks(on_stdout, on_stderr, on_result, on_error)
        async with self.execute_stream(code, timeout=timeout) as stream:
            async for event in stream:
                callbacks.dispatch(event)
            return await stream.result()

    def execute_stream(self, code: str, *, timeout: float | None = None) -> AsyncExecutionStream:
        """Run ``code`` and return a handle that yields its events as they happen."""
        request = self._api.build_request(
            "POST",
            sandbox_path(self.id, "execute"),
            json=execute_body(code, timeout),
            timeout=self._api.timeout.for_execution(timeout),
        )
        return AsyncExecutionStream(self._api, request)

    async def interrupt(self) -> None:
        """Interrupt the running code (it raises ``KeyboardInterrupt``)."""
        await self._api.request("POST", sandbox_path(self.id, "interrupt"))

    async def restart(self) -> SandboxInfo:
        """Replace the kernel with a fresh one; variables are lost, the id stays."""
        response = await self._api.request("POST", sandbox_path(self.id, "restart"))
        self._info = SandboxInfo.from_json(json_object(response))
        return self._info

    async def refresh(self) -> SandboxInfo:
        """Fetch the sandbox's current state from the gateway."""
        response = await self._api.request("GET", sandbox_path(self.id))
        self._info = SandboxInfo.from_json(json_object(response))
        return self._info

    async def export_notebook(self, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """The session's history as a Jupyter notebook (nbformat 4.5 dict); saved to ``path``
        as a ``.ipynb`` when given. Works until the gateway forgets a deleted sandbox's history.

        Example::

            await session.execute("print('hi')")
            notebook = await session.export_notebook("trajectory.ipynb")
            assert notebook["cells"][0]["source"] == "print('hi')"
        """
        response = await self._api.request("GET", sandbox_path(self.id, "notebook"))
        notebook = json_object(response)
        if path is not None:
            save_notebook(notebook, path)
        return notebook

    async def close(self) -> None:
        """Delete the sandbox. Safe to call twice, and when it is already gone."""
        if self._closed:
            return
        try:
            await self._api.request("DELETE", sandbox_path(self.id))
        except NotFoundError:
            pass  # expired or deleted elsewhere: the sandbox is gone either way
        self._closed = True

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, template={self._info.template!r})"
