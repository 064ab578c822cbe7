"""Executing code: streaming, accumulation, callbacks and failures (the sync twin is generated)."""

from __future__ import annotations

import builtins
import json
from typing import Any

import httpx
import pytest

import sandcell

from ..fakes import BASE_URL, TOKEN, Chunks, FakeGateway, error_response, event, hello_events, ndjson

EXECUTE_PATH = "/api/v1/sandboxes/sbx_1/execute"


def make_client(gateway: FakeGateway) -> sandcell.AsyncClient:
    gateway.add_sandbox("sbx_1")
    return sandcell.AsyncClient(base_url=BASE_URL, token=TOKEN, transport=gateway.transport)


def counting_events() -> list[dict[str, Any]]:
    """``for i in range(3): print(i)`` then ``6*7``, as the gateway streams it."""
    return [
        event(0, "status", execution_state="busy"),
        event(1, "execute_input", code="...", execution_count=5),
        event(2, "stream", name="stdout", text="0\n"),
        event(3, "stream", name="stdout", text="1\n"),
        event(4, "stream", name="stderr", text="warning\n"),
        event(5, "stream", name="stdout", text="2\n"),
        event(6, "execute_result", data={"text/plain": "42"}, metadata={}, execution_count=5),
        event(7, "status", execution_state="idle"),
        event(8, "execute_reply", status="ok", execution_count=5),
    ]


def failing_events() -> list[dict[str, Any]]:
    traceback = ["\x1b[31mZeroDivisionError\x1b[0m", "division by zero"]
    return [
        event(0, "stream", name="stdout", text="before\n"),
        event(1, "error", ename="ZeroDivisionError", evalue="division by zero", traceback=traceback),
        event(2, "execute_reply", status="error", execution_count=2),
    ]


@pytest.mark.anyio
async def test_execute_accumulates_output_results_and_count() -> None:
    gateway = FakeGateway()
    gateway.queue_execution(*counting_events())
    async with make_client(gateway) as client:
        session = await client.sessions.get("sbx_1")
        execution = await session.execute("for i in range(3): print(i)\n6*7")
    assert execution.stdout == "0\n1\n2\n"
    assert execution.stderr == "warning\n"
    assert execution.logs.stdout == ["0\n", "1\n", "2\n"]
    assert [result.text for result in execution.results] == ["42"]
    assert execution.text == "42"
    assert (execution.execution_count, execution.status, execution.error) == (5, "ok", None)


@pytest.mark.anyio
async def test_execute_posts_the_code_and_waits_longer_than_its_timeout() -> None:
    gateway = FakeGateway()
    gateway.queue_execution(*hello_events())
    gateway.queue_execution(*hello_events())
    async with make_client(gateway) as client:
        session = await client.sessions.get("sbx_1")
        await session.execute("print(1)", timeout=45)
        await session.execute("print(1)")
    timed, untimed = gateway.sent("POST", EXECUTE_PATH)
    assert timed.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(timed.content) == {"code": "print(1)", "timeout": 45}
    assert json.loads(untimed.content) == {"code": "print(1)"}
    assert timed.extensions["timeout"]["read"] >= 45 + 5
    assert untimed.extensions["timeout"]["read"] is None  # quiet code may run as long as it likes


@pytest.mark.anyio
async def test_code_that_raises_is_data_not_an_exception() -> None:
    gateway = FakeGateway()
    gateway.queue_execution(*failing_events())
    async with make_client(gateway) as client:
        session = await client.sessions.get("sbx_1")
        execution = await session.execute("print('before'); 1/0")
    assert execution.error is not None
    assert (execution.error.ename, execution.error.evalue) == ("ZeroDivisionError", "division by zero")
    assert execution.status == "error"
    with pytest.raises(sandcell.ExecutionError) as caught:
        execution.raise_for_error()
    assert caught.value.execution is execution
    assert caught.value.execution.stdout == "before\n"
    assert caught.value.traceback_text == "ZeroDivisionError\ndivision by zero"


@pytest.mark.anyio
async def test_callbacks_are_called_in_stream_order() -> None:
    gateway = FakeGateway()
    events = counting_events()
    events.insert(6, event(6, "display_data", data={"text/html": "<b>hi</b>"}, metadata={}, transient={}))
    events[-1:] = failing_events()[1:]
    gateway.queue_execution(*events)
    seen: list[tuple[str, Any]] = []
    async with make_client(gateway) as client:
        session = await client.sessions.get("sbx_1")
        await session.execute(
            "...",
            on_stdout=lambda text: seen.append(("stdout", text)),
            on_stderr=lambda text: seen.append(("stderr", text)),
            on_result=lambda result: seen.append(("result", result.formats())),
            on_error=lambda error: seen.append(("error", error.ename)),
        )
    assert seen == [
        ("stdout", "0\n"),
        ("stdout", "1\n"),
        ("stderr", "warning\n"),
        ("stdout", "2\n"),
        ("result", ["html"]),
        ("result", ["text"]),
        ("error", "ZeroDivisionError"),
    ]


@pytest.mark.anyio
async def test_callbacks_run_while_the_stream_is_still_arriving() -> None:
    gateway = FakeGateway()
    chunks = gateway.queue_execution(
        event(0, "stream", name="stdout", text="a"),
        event(1, "stream", name="stdout", text="b"),
        event(2, "execute_reply", status="ok", execution_count=1),
    )
    async with make_client(gateway) as client:
        session = await client.sessions.get("sbx_1")
        await session.execute("...", on_stdout=lambda text: chunks.log.append(f"got {text}"))
    assert chunks.log == ["sent 0", "got a", "sent 1", "got b", "sent 2"]


@pytest.mark.anyio
async def test_a_line_split_across_chunks_is_parsed_once_whole() -> None:
    gateway = FakeGateway()
    body = ndjson(*hello_events())
    gateway.queue_chunks([body[:17], body[17:70], b"", body[70:71], body[71:]])
    async with make_client(gateway) as client:
        session = await client.sessions.get("sbx_1")
        stream = session.execute_stream("print(1)")
        events = [item async for item in stream]
    assert [item.seq for item in events] == [0, 1, 2, 3, 4]
    assert isinstance(events[2], sandcell.StreamEvent) and events[2].text == "1\n"
    assert stream.execution.stdout == "1\n"


@pytest.mark.anyio
async def test_execute_stream_yields_typed_events_and_then_the_result() -> None:
    gateway = FakeGateway()
    gateway.queue_execution(*hello_events(), event(5, "comm_msg", data={}))
    async with make_client(gateway) as client:
        session = await client.sessions.get("sbx_1")
        async with session.execute_stream("print(1)") as stream:
            kinds = []
            async for item in stream:
                kinds.append(type(item).__name__)
                if isinstance(item, sandcell.StreamEvent):
                    assert stream.execution.stdout == "1\n"  # accumulated as it arrives
            execution = await stream.result()
        assert stream.response is not None and stream.response.is_closed
    assert kinds == ["StatusEvent", "ExecuteInputEvent", "StreamEvent", "StatusEvent", "ReplyEvent", "ExecutionEvent"]
    assert execution.stdout == "1\n" and execution.execution_count == 1


@pytest.mark.anyio
async def test_nothing_is_sent_until_the_stream_is_used() -> None:
    gateway = FakeGateway()
    gateway.queue_execution(*hello_events())
    async with make_client(gateway) as client:
        session = await client.sessions.get("sbx_1")
        stream = session.execute_stream("print(1)")
        assert gateway.sent("POST", EXECUTE_PATH) == []
        assert (await stream.result()).stdout == "1\n"
    assert len(gateway.sent("POST", EXECUTE_PATH)) == 1


@pytest.mark.anyio
async def test_leaving_the_stream_early_closes_it_and_result_says_it_is_incomplete() -> None:
    gateway = FakeGateway()
    chunks = gateway.queue_execution(*hello_events())
    async with make_client(gateway) as client:
        session = await client.sessions.get("sbx_1")
        async with session.execute_stream("print(1)") as stream:
            async for item in stream:
                break
        assert stream.response is not None and stream.response.is_closed
        assert chunks.closed
        with pytest.raises(sandcell.SandboxError) as caught:
            await stream.result()
    assert caught.value.code == "incomplete_stream"
    assert [item async for item in stream] == []


@pytest.mark.anyio
async def test_a_timeout_event_raises_timeout_error_with_the_partial_output() -> None:
    gateway = FakeGateway()
    gateway.queue_execution(
        event(0, "stream", name="stdout", text="working\n"),
        event(1, "timeout", timeout=2),
        event(2, "error", ename="KeyboardInterrupt", evalue="", traceback=[]),
        event(3, "execute_reply", status="error", execution_count=3),
    )
    async with make_client(gateway) as client:
        session = await client.sessions.get("sbx_1")
        with pytest.raises(sandcell.TimeoutError) as caught:
            await session.execute("import time; print('working'); time.sleep(60)", timeout=2)
    assert isinstance(caught.value, builtins.TimeoutError)
    assert caught.value.timeout == 2
    assert caught.value.execution is not None and caught.value.execution.stdout == "working\n"
    assert "timeout=" in str(caught.value)


@pytest.mark.anyio
async def test_a_gateway_error_event_raises_sandbox_error() -> None:
    gateway = FakeGateway()
    gateway.queue_execution(
        event(0, "stream", name="stdout", text="allocating\n"),
        event(1, "gateway_error", code="kernel_died", message="the kernel exited with -9"),
    )
    async with make_client(gateway) as client:
        session = await client.sessions.get("sbx_1")
        with pytest.raises(sandcell.SandboxError) as caught:
            await session.execute("x = bytearray(10**12)")
    assert (caught.value.code, caught.value.message) == ("kernel_died", "the kernel exited with -9")
    assert caught.value.execution is not None and caught.value.execution.stdout == "allocating\n"
    assert "restart()" in str(caught.value)


@pytest.mark.anyio
async def test_a_stream_that_ends_without_a_reply_raises_sandbox_error() -> None:
    gateway = FakeGateway()
    gateway.queue_execution(event(0, "stream", name="stdout", text="half"))
    async with make_client(gateway) as client:
        session = await client.sessions.get("sbx_1")
        with pytest.raises(sandcell.SandboxError) as caught:
            await session.execute("...")
    assert caught.value.code == "incomplete_stream"
    assert caught.value.execution is not None and caught.value.execution.stdout == "half"


@pytest.mark.anyio
async def test_an_error_status_on_execute_raises_before_any_event() -> None:
    gateway = FakeGateway()
    gateway.fail("POST", EXECUTE_PATH, error_response(409, "sandbox_closed", "the sandbox is being deleted"))
    async with make_client(gateway) as client:
        session = await client.sessions.get("sbx_1")
        with pytest.raises(sandcell.ConflictError) as caught:
            await session.execute("1")
    assert caught.value.code == "sandbox_closed"
    assert caught.value.message == "the sandbox is being deleted"


@pytest.mark.anyio
async def test_a_connection_lost_mid_stream_raises_connection_error() -> None:
    gateway = FakeGateway()
    gateway.queue_chunks([ndjson(event(0, "stream", name="stdout", text="x"))], error=httpx.ReadError("reset"))
    async with make_client(gateway) as client:
        session = await client.sessions.get("sbx_1")
        stream = session.execute_stream("...")
        with pytest.raises(sandcell.APIConnectionError):
            await stream.result()
    assert stream.execution.stdout == "x"


@pytest.mark.anyio
async def test_a_line_that_is_not_json_raises_sandbox_error() -> None:
    gateway = FakeGateway()
    gateway.queue_chunks([b"<html>proxy error</html>\n"])
    async with make_client(gateway) as client:
        session = await client.sessions.get("sbx_1")
        with pytest.raises(sandcell.SandboxError) as caught:
            await session.execute("1")
    assert caught.value.code == "invalid_event"
