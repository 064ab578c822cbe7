"""``client.plugins`` against a fake gateway at the HTTP boundary (httpx.MockTransport)."""

from __future__ import annotations

import doctest
import inspect
import json
from typing import Any

import httpx
import pytest

import sandcell
from sandcell import _plugin_models

from .fakes import BASE_URL, TOKEN, error_response, ndjson

MANIFEST = {"name": "subtract_numbers", "version": "1.0.0", "versions": ["1.0.0"],
            "language": "python", "description": "a - b", "isolation": "shared", "max_invocations": 1000,
            "max_age": 300, "timeout": 30,
            "input_schema": {"type": "object", "required": ["operand1", "operand2"]},
            "output_schema": {"type": "object"}}
OUTPUT = {"result": 5.0, "operation": "subtract", "operand1": 10.0, "operand2": 5.0}


def events(*kinds: str) -> bytes:
    contents = {"started": {"invocation_id": "inv_1", "worker_id": "wkr_1",
                            "plugin": "subtract_numbers", "version": "1.0.0"},
                "progress": {"percent": 50.0, "message": "half"},
                "log": {"level": "info", "message": "hi"},
                "completed": {"output": OUTPUT},
                "failed": {"code": "worker_crashed", "message": "it died", "details": "x"}}
    return ndjson(*({"seq": i, "msg_type": k, "content": contents[k]} for i, k in enumerate(kinds)))


def gateway(stream: bytes, requests: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        path = request.url.path
        if path == "/api/v1/plugins":
            return httpx.Response(200, json={"plugins": [MANIFEST]})
        if path == "/api/v1/plugins/subtract_numbers":
            return httpx.Response(200, json=MANIFEST)
        if path == "/api/v1/plugins/subtract_numbers/invoke":
            body = json.loads(request.content)
            if "operand1" not in body["input"]:
                return error_response(400, "invalid_input", "operand1: required")
            return httpx.Response(200, content=stream,
                                  headers={"Content-Type": "application/x-ndjson"})
        return error_response(404, "not_found", f"no plugin {path}")

    return httpx.MockTransport(handle)


def client(stream: bytes, requests: list[httpx.Request] | None = None) -> sandcell.Client:
    return sandcell.Client(base_url=BASE_URL, token=TOKEN,
                           transport=gateway(stream, requests if requests is not None else []))


def test_list_and_get_give_manifests() -> None:
    with client(b"") as c:
        (listed,) = c.plugins.list()
        plugin = c.plugins.get("subtract_numbers")
        with pytest.raises(sandcell.NotFoundError):
            c.plugins.get("nope")
    assert listed.name == plugin.name == "subtract_numbers"
    assert (plugin.version, plugin.language) == ("1.0.0", "python")
    assert plugin.input_schema["required"] == ["operand1", "operand2"]
    assert plugin.info.versions == ["1.0.0"] and "subtract_numbers" in repr(plugin)


def test_invoke_returns_the_output_and_reports_progress() -> None:
    requests: list[httpx.Request] = []
    seen: list[sandcell.ProgressEvent] = []
    with client(events("started", "progress", "log", "completed"), requests) as c:
        plugin = c.plugins.get("subtract_numbers")
        output = plugin.invoke(operand1=10, operand2=5, timeout=9, on_progress=seen.append)
    assert output == OUTPUT
    assert [(e.percent, e.message) for e in seen] == [(50.0, "half")]
    assert json.loads(requests[-1].content) == {"input": {"operand1": 10, "operand2": 5},
                                                "timeout": 9}


def test_invoke_stream_yields_typed_events_in_order() -> None:
    with client(events("started", "progress", "log", "completed")) as c:
        with c.plugins.get("subtract_numbers").invoke_stream(operand1=1, operand2=2) as invocation:
            got = list(invocation)
            assert invocation.result() == OUTPUT
    assert [type(e) for e in got] == [sandcell.StartedEvent, sandcell.ProgressEvent,
                                      sandcell.LogEvent, sandcell.CompletedEvent]
    assert [e.seq for e in got] == [0, 1, 2, 3] and got[0].worker_id == "wkr_1"


def test_a_failed_invocation_raises_plugin_error() -> None:
    with client(events("started", "failed")) as c:
        with pytest.raises(sandcell.PluginError) as info:
            c.plugins.invoke("subtract_numbers", operand1=1, operand2=2, progress=False)
    assert info.value.code == "worker_crashed" and info.value.details == "x"
    assert "it died" in str(info.value)


def test_invalid_input_is_a_bad_request_error() -> None:
    with client(b"") as c, pytest.raises(sandcell.BadRequestError) as info:
        c.plugins.get("subtract_numbers").invoke(operand2=2)
    assert info.value.code == "invalid_input"


@pytest.mark.anyio
async def test_async_twin() -> None:
    transport = gateway(events("started", "progress", "completed"), [])
    async with sandcell.AsyncClient(base_url=BASE_URL, token=TOKEN, transport=transport) as c:
        plugin = await c.plugins.get("subtract_numbers")
        assert await plugin.invoke(operand1=10, operand2=5, progress=False) == OUTPUT
        async with plugin.invoke_stream(operand1=10, operand2=5) as invocation:
            kinds = [event.msg_type async for event in invocation]
        assert kinds == ["started", "progress", "completed"]


def test_a_stream_without_an_outcome_is_an_error() -> None:
    with client(events("started")) as c, pytest.raises(sandcell.PluginError, match="no_result"):
        c.plugins.invoke("subtract_numbers", operand1=1, operand2=2)


TWINS = [(sandcell.Plugins, sandcell.AsyncPlugins), (sandcell.Plugin, sandcell.AsyncPlugin),
         (sandcell.PluginInvocation, sandcell.AsyncPluginInvocation)]


@pytest.mark.parametrize(("sync", "async_"), TWINS)
def test_twins_match(sync: type, async_: type) -> None:
    names = {n for n in dir(sync) if not n.startswith("_")}
    assert names == {n for n in dir(async_) if not n.startswith("_")} and names
    for name in names | {"__init__"}:
        sync_member, async_member = getattr(sync, name), getattr(async_, name)
        if callable(sync_member):
            assert str(inspect.signature(sync_member)).replace("Async", "") == str(
                inspect.signature(async_member)).replace("Async", "")
            if name != "__init__":
                assert inspect.iscoroutinefunction(async_member) is (name != "invoke_stream")


def test_plugin_models_doctests() -> None:
    results = doctest.testmod(_plugin_models, verbose=False)
    assert results.attempted > 0 and results.failed == 0


def test_progress_bar_uses_tqdm_when_installed(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    reporter = _plugin_models.ProgressReporter("subtract_numbers", True, None)
    reporter(_plugin_models.ProgressEvent(0, "progress", 50.0, "half"))
    reporter.close()
    assert "subtract_numbers" in capsys.readouterr().err


@pytest.mark.parametrize("policy", [
    {"isolation": "per_call", "max_invocations": 1, "max_age": 300},
    {"isolation": "shared", "max_invocations": 5, "max_age": 30.5}])
def test_plugin_info_keeps_the_isolation_policy(policy: dict[str, Any]) -> None:
    info = sandcell.PluginInfo.from_json({**MANIFEST, **policy})
    assert (info.isolation, info.max_invocations, info.max_age) == tuple(policy.values())
