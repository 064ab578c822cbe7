"""The authoring kit and the PPP host, served in-process on a real gRPC UNIX socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from sandcell_plugin import Context, PluginFailure, load_plugin, plugin
from sandcell_plugin._proto import plugin_pb2 as pb
from sandcell_plugin._proto import plugin_pb2_grpc as pb_grpc
from sandcell_plugin.host import CHUNK_SIZE, load_from_directory, start_server

pytestmark = pytest.mark.anyio
TESTDATA = Path(__file__).parent / "testdata"


@plugin(name="counter", version="2.0.0")
def counter(ctx: Context, n: int, fail: str = "") -> dict[str, Any]:
    for i in range(n):
        ctx.log(f"step {i}", level="debug")
        ctx.progress(100 * (i + 1) / n, f"{i + 1}/{n}")
    if fail == "failure":
        raise PluginFailure("no thanks", code="refused", details="because")
    if fail == "bug":
        raise KeyError("oops")
    if fail == "not_a_dict":
        return [n]  # type: ignore[return-value]
    if fail == "big":
        return {"blob": "y" * (CHUNK_SIZE + 10)}
    return {"n": n}


@plugin(name="waiter", version="1.0.0")
async def waiter(ctx: Context, seconds: float) -> dict[str, Any]:
    ctx.progress(0, "waiting")
    await asyncio.sleep(seconds)
    return {"waited": seconds}


@pytest.fixture
async def stub(tmp_path: Path) -> AsyncIterator[pb_grpc.PluginWorkerStub]:
    socket = tmp_path / "ppp.sock"
    server = await start_server(counter, f"unix:{socket}")
    async with grpc.aio.insecure_channel(f"unix:{socket}") as channel:
        yield pb_grpc.PluginWorkerStub(channel)
    await server.stop(None)


async def invoke(stub: pb_grpc.PluginWorkerStub, **inputs: Any) -> list[pb.InvokeEvent]:
    request = pb.InvokeRequest(invocation_id="inv_1", input_json=json.dumps(inputs))
    return [event async for event in stub.Invoke(request, timeout=10)]


async def test_grpc_aio_runs_on_the_sessions_one_loop(
        one_event_loop: asyncio.AbstractEventLoop) -> None:
    """This module's channels share grpc.aio's completion queue with the agent's tests
    (tests/gateway): their loop must still be open, so it is this one (conftest.py)."""
    assert asyncio.get_running_loop() is one_event_loop and not one_event_loop.is_closed()


async def test_health_and_init(stub: pb_grpc.PluginWorkerStub) -> None:
    health = await stub.Health(pb.HealthRequest(), timeout=5)
    assert health.status == pb.HealthResponse.Status.SERVING
    info = await stub.Init(pb.InitRequest(plugin_name="counter", plugin_version="2.0.0"))
    assert (info.plugin_name, info.plugin_version, info.language) == ("counter", "2.0.0", "python")
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.Init(pb.InitRequest(plugin_name="other"))
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_progress_and_logs_arrive_in_order_then_completed(stub: pb_grpc.PluginWorkerStub) -> None:
    events = await invoke(stub, n=3)
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["log", "progress"] * 3 + ["completed"]
    assert [e.progress.percent for e in events if e.HasField("progress")] == [
        pytest.approx(100 / 3), pytest.approx(200 / 3), 100.0]
    assert events[0].log.level == "debug" and events[1].progress.message == "1/3"
    assert json.loads(events[-1].completed.output_json) == {"n": 3}


@pytest.mark.parametrize(("fail", "code", "words"), [
    ("failure", "refused", "no thanks"),
    ("bug", "plugin_error", "KeyError: 'oops'"),
    ("not_a_dict", "invalid_output", "returned list"),
])
async def test_failures_are_failed_events(stub: pb_grpc.PluginWorkerStub, fail: str, code: str,
                                          words: str) -> None:
    last = (await invoke(stub, n=1, fail=fail))[-1]
    assert last.WhichOneof("event") == "failed"
    assert last.failed.code == code and words in last.failed.message
    if fail == "bug":
        assert "Traceback" in last.failed.details


async def test_large_output_is_chunked(stub: pb_grpc.PluginWorkerStub) -> None:
    events = await invoke(stub, n=0, fail="big")
    chunks = [e.result_chunk.data for e in events if e.HasField("result_chunk")]
    assert len(chunks) == 2 and events[-1].completed.output_json == ""
    assert len(json.loads(b"".join(chunks))["blob"]) == CHUNK_SIZE + 10


async def test_malformed_input_is_invalid_argument(stub: pb_grpc.PluginWorkerStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        [e async for e in stub.Invoke(pb.InvokeRequest(input_json="[1"))]
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as error:
        [e async for e in stub.Invoke(pb.InvokeRequest(input_json="[1]"))]
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_async_plugins_and_client_deadlines(tmp_path: Path) -> None:
    socket = tmp_path / "w.sock"
    server = await start_server(waiter, f"unix:{socket}")
    try:
        async with grpc.aio.insecure_channel(f"unix:{socket}") as channel:
            stub = pb_grpc.PluginWorkerStub(channel)
            quick = await invoke(stub, seconds=0.01)
            assert json.loads(quick[-1].completed.output_json) == {"waited": 0.01}
            call = stub.Invoke(pb.InvokeRequest(input_json='{"seconds": 30}'), timeout=0.3)
            with pytest.raises(grpc.aio.AioRpcError) as error:
                [e async for e in call]
            assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        await server.stop(None)


def test_plugins_load_from_their_directory() -> None:
    loaded = load_from_directory(TESTDATA / "sandcell_test_plugin")
    assert (loaded.name, loaded.version) == ("sandcell_test_plugin", "0.1.0")
    assert loaded(None, mode="steps", steps=0) == {"steps": 0}  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="module:attribute"):
        load_plugin("no_colon")
    with pytest.raises(TypeError, match="not a @plugin"):
        load_plugin("json:dumps")
