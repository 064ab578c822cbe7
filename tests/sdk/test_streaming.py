"""The I/O-free core of an execute stream: parsing lines and accumulating events."""

from __future__ import annotations

import json
from typing import Any

import pytest

import sandcell
from sandcell._streaming import Callbacks, ExecutionAccumulator, parse_event

from .fakes import event


def line(seq: int, msg_type: str, **content: Any) -> str:
    return json.dumps(event(seq, msg_type, **content))


def accumulate(*lines: str) -> ExecutionAccumulator:
    accumulator = ExecutionAccumulator()
    for text in lines:
        parsed = parse_event(text)
        assert parsed is not None
        accumulator.apply(parsed)
    return accumulator


def display(seq: int, text: str, display_id: str | None = None) -> str:
    transient = {"display_id": display_id} if display_id else {}
    return line(seq, "display_data", data={"text/plain": text}, metadata={}, transient=transient)


REPLY = line(99, "execute_reply", status="ok", execution_count=1)


# Parsing: one class per msg_type of docs/api.md


@pytest.mark.parametrize(
    ("msg_type", "content", "event_type", "fields"),
    [
        ("status", {"execution_state": "busy"}, sandcell.StatusEvent, {"execution_state": "busy"}),
        ("execute_input", {"code": "1", "execution_count": 4}, sandcell.ExecuteInputEvent, {"code": "1", "execution_count": 4}),
        ("stream", {"name": "stderr", "text": "oops"}, sandcell.StreamEvent, {"name": "stderr", "text": "oops"}),
        ("clear_output", {"wait": True}, sandcell.ClearOutputEvent, {"wait": True}),
        ("timeout", {"timeout": 30}, sandcell.TimeoutEvent, {"timeout": 30}),
        ("gateway_error", {"code": "kernel_died", "message": "m"}, sandcell.GatewayErrorEvent, {"code": "kernel_died", "message": "m"}),
        ("execute_reply", {"status": "aborted", "execution_count": None}, sandcell.ReplyEvent, {"status": "aborted", "execution_count": None}),
    ],
)
def test_each_msg_type_parses_to_its_event_class(
    msg_type: str, content: dict[str, Any], event_type: type, fields: dict[str, Any]
) -> None:
    parsed = parse_event(line(7, msg_type, **content))
    assert type(parsed) is event_type
    assert isinstance(parsed, sandcell.ExecutionEvent)
    assert (parsed.seq, parsed.msg_type, parsed.content) == (7, msg_type, content)
    assert {name: getattr(parsed, name) for name in fields} == fields


@pytest.mark.parametrize("msg_type", ["display_data", "update_display_data", "execute_result"])
def test_rich_outputs_parse_to_result_events(msg_type: str) -> None:
    content = {"data": {"image/png": "iVBO"}, "metadata": {"image/png": {"width": 4}}, "transient": {"display_id": "d1"}}
    parsed = parse_event(line(3, msg_type, **content))
    assert isinstance(parsed, sandcell.ResultEvent)
    assert parsed.result.data == {"image/png": "iVBO"}
    assert parsed.result.metadata == {"image/png": {"width": 4}}
    assert parsed.result.display_id == "d1"
    assert parsed.result.is_main_result is (msg_type == "execute_result")


def test_an_error_parses_to_an_execution_error() -> None:
    parsed = parse_event(line(4, "error", ename="NameError", evalue="name 'x' is not defined", traceback=["a", "b"]))
    assert isinstance(parsed, sandcell.ErrorEvent)
    assert isinstance(parsed.error, sandcell.ExecutionError)
    assert (parsed.error.ename, parsed.error.evalue, parsed.error.traceback) == (
        "NameError",
        "name 'x' is not defined",
        ["a", "b"],
    )


def test_an_unknown_msg_type_parses_to_the_base_class() -> None:
    parsed = parse_event(line(9, "comm_open", comm_id="c1"))
    assert type(parsed) is sandcell.ExecutionEvent
    assert parsed is not None and parsed.content == {"comm_id": "c1"}


def test_blank_lines_are_skipped_and_garbage_is_reported() -> None:
    assert parse_event("") is None and parse_event("  \r") is None
    with pytest.raises(sandcell.SandboxError, match="not JSON"):
        parse_event("{oops")
    with pytest.raises(sandcell.SandboxError, match="not a JSON object"):
        parse_event("[1, 2]")


def test_missing_content_fields_get_neutral_defaults() -> None:
    parsed = parse_event(json.dumps({"seq": 1, "msg_type": "stream"}))
    assert isinstance(parsed, sandcell.StreamEvent)
    assert (parsed.name, parsed.text) == ("stdout", "")


# Accumulation


def test_streams_accumulate_chunk_by_chunk_per_name() -> None:
    execution = accumulate(
        line(0, "stream", name="stdout", text="a"),
        line(1, "stream", name="stderr", text="E"),
        line(2, "stream", name="stdout", text="b\n"),
        REPLY,
    ).result()
    assert execution.logs == sandcell.Logs(stdout=["a", "b\n"], stderr=["E"])
    assert (execution.stdout, execution.stderr) == ("ab\n", "E")


def test_results_keep_display_and_execute_result_order() -> None:
    execution = accumulate(
        display(0, "first"),
        line(1, "execute_result", data={"text/plain": "main"}, metadata={}, execution_count=3),
        display(2, "after"),
        REPLY,
    ).result()
    assert [result.text for result in execution.results] == ["first", "main", "after"]
    assert [result.is_main_result for result in execution.results] == [False, True, False]
    assert execution.text == "main"


def test_execution_count_comes_from_input_result_and_reply() -> None:
    accumulator = accumulate(line(0, "execute_input", code="1", execution_count=8))
    assert accumulator.execution.execution_count == 8
    accumulator.apply(sandcell.ReplyEvent.from_content(1, "execute_reply", {"status": "ok", "execution_count": 9}))
    assert accumulator.result().execution_count == 9


def test_an_error_is_recorded_and_points_back_at_its_execution() -> None:
    execution = accumulate(
        line(0, "error", ename="ValueError", evalue="bad", traceback=[]),
        line(1, "execute_reply", status="error", execution_count=1),
    ).result()
    assert execution.error is not None and execution.error.execution is execution
    assert execution.status == "error"


def test_clear_output_clears_streams_and_results_at_once() -> None:
    execution = accumulate(
        line(0, "stream", name="stdout", text="old"),
        display(1, "old"),
        line(2, "clear_output", wait=False),
        line(3, "stream", name="stdout", text="new"),
        REPLY,
    ).result()
    assert (execution.stdout, execution.results) == ("new", [])


def test_clear_output_with_wait_clears_only_when_the_next_output_arrives() -> None:
    accumulator = accumulate(line(0, "stream", name="stdout", text="10%"), line(1, "clear_output", wait=True))
    assert accumulator.execution.stdout == "10%"
    accumulator.apply(sandcell.StreamEvent.from_content(2, "stream", {"name": "stdout", "text": "20%"}))
    assert accumulator.execution.stdout == "20%"


def test_update_display_data_replaces_the_display_with_the_same_id() -> None:
    execution = accumulate(
        display(0, "step 1", display_id="progress"),
        display(1, "other"),
        line(2, "update_display_data", data={"text/plain": "step 2"}, metadata={}, transient={"display_id": "progress"}),
        line(3, "update_display_data", data={"text/plain": "lost"}, metadata={}, transient={"display_id": "unknown"}),
        REPLY,
    ).result()
    assert [result.text for result in execution.results] == ["step 2", "other"]


def test_result_raises_for_timeout_gateway_error_and_missing_reply() -> None:
    timed_out = accumulate(line(0, "stream", name="stdout", text="partial"), line(1, "timeout", timeout=3), REPLY)
    with pytest.raises(sandcell.TimeoutError) as caught:
        timed_out.result()
    assert caught.value.timeout == 3 and caught.value.execution is timed_out.execution
    with pytest.raises(sandcell.SandboxError, match="kernel_died"):
        accumulate(line(0, "gateway_error", code="kernel_died", message="gone")).result()
    with pytest.raises(sandcell.SandboxError) as incomplete:
        accumulate(line(0, "stream", name="stdout", text="x")).result()
    assert incomplete.value.code == "incomplete_stream"


# Callbacks


def test_callbacks_only_see_their_own_kind_of_event() -> None:
    calls: list[tuple[str, object]] = []
    callbacks = Callbacks(on_stderr=lambda text: calls.append(("stderr", text)))
    for text in [
        line(0, "stream", name="stdout", text="out"),
        line(1, "stream", name="stderr", text="err"),
        display(2, "shown"),
        line(3, "error", ename="E", evalue="", traceback=[]),
    ]:
        parsed = parse_event(text)
        assert parsed is not None
        callbacks.dispatch(parsed)
    assert calls == [("stderr", "err")]
