"""Recording the cells Jupyter clients run, from kernel messages alone (no kernel, no socket)."""

from __future__ import annotations

from typing import Any

from sandcell_gateway import jupyter_history
from sandcell_gateway.jupyter_history import JupyterHistory
from sandcell_gateway.store import CellRecord


def request(msg_id: str, code: str, **content: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    return {"msg_id": msg_id, "msg_type": "execute_request"}, {"code": code, **content}


def reply_to(msg_id: str, msg_type: str, **content: Any) -> dict[str, Any]:
    return {"msg_type": msg_type, "parent_header": {"msg_id": msg_id}, "content": content}


def cell_messages(msg_id: str, text: str = "2\n", count: int = 1) -> list[dict[str, Any]]:
    return [reply_to(msg_id, "status", execution_state="busy"),
            reply_to(msg_id, "execute_input", code="print(2)", execution_count=count),
            reply_to(msg_id, "stream", name="stdout", text=text),
            reply_to(msg_id, "execute_reply", status="ok", execution_count=count),
            reply_to(msg_id, "status", execution_state="idle")]


def recorder() -> tuple[JupyterHistory, list[CellRecord]]:
    saved: list[CellRecord] = []
    return JupyterHistory(saved.append, output_limit=100), saved


def test_a_cell_is_saved_once_its_reply_and_idle_came() -> None:
    history, saved = recorder()
    history.started(*request("a", "print(2)"))
    *before_idle, idle = cell_messages("a")
    for msg in before_idle:
        history.on_message(msg)
    assert saved == []
    history.on_message(idle)
    [cell] = saved
    assert (cell.code, cell.status, cell.execution_count) == ("print(2)", "ok", 1)
    assert cell.outputs == [{"output_type": "stream", "name": "stdout", "text": "2\n"}]
    assert len(history) == 0


def test_idle_before_the_reply_still_finishes_the_cell() -> None:
    history, saved = recorder()
    history.started(*request("a", "1"))
    busy, _, stream, reply, idle = cell_messages("a")
    for msg in (busy, stream, idle, reply):
        history.on_message(msg)
    assert [c.status for c in saved] == ["ok"]


def test_other_requests_and_housekeeping_are_not_recorded() -> None:
    history, saved = recorder()
    history.started(*request("silent", "x", silent=True))
    history.started(*request("nohist", "x", store_history=False))
    history.started(*request("bad", 5))  # type: ignore[arg-type]
    for msg_id in ("silent", "nohist", "bad", "rest-execution"):
        for msg in cell_messages(msg_id):
            history.on_message(msg)
    assert saved == [] and len(history) == 0


def test_interleaved_cells_are_kept_apart() -> None:
    history, saved = recorder()
    history.started(*request("a", "first"))
    history.started(*request("b", "second"))
    for msg_a, msg_b in zip(cell_messages("a", "A\n", 1), cell_messages("b", "B\n", 2)):
        history.on_message(msg_b)
        history.on_message(msg_a)
    by_code = {c.code: c.outputs[0]["text"] for c in saved}
    assert by_code == {"first": "A\n", "second": "B\n"}


def test_output_past_the_limit_is_dropped_with_a_marker() -> None:
    history, saved = recorder()
    history.started(*request("a", "flood"))
    for _ in range(5):
        history.on_message(reply_to("a", "stream", name="stdout", text="x" * 30))
    for msg in cell_messages("a")[3:]:  # reply, idle
        history.on_message(msg)
    [cell] = saved
    # three chunks and the part of the fourth that fits in 100 bytes (merged, as a front end
    # does), then one marker, once
    assert [(o["name"], o["text"][:3]) for o in cell.outputs] == [("stdout", "xxx"),
                                                                   ("stderr", "\n[S")]
    assert cell.outputs[0]["text"] == "x" * 100
    assert "truncated after 100 bytes" in cell.outputs[1]["text"]


def test_the_record_cap_counts_utf8_bytes() -> None:
    for char, width in [("é", 2), ("€", 3), ("😀", 4)]:
        history, saved = recorder()
        history.started(*request("a", "flood"))
        for _ in range(5):
            history.on_message(reply_to("a", "stream", name="stdout", text=char * 15))
        for msg in cell_messages("a")[3:]:  # reply, idle
            history.on_message(msg)
        [cell] = saved
        # whole messages, then the crossing one cut between characters: 100 bytes at most
        assert cell.outputs[0]["text"] == char * (100 // width), char
        assert "truncated after 100 bytes" in cell.outputs[1]["text"]


def test_a_dead_kernel_leaves_its_open_cells_unfinished() -> None:
    history, saved = recorder()
    history.started(*request("a", "running"))
    history.started(*request("b", "queued"))
    history.on_message(reply_to("a", "stream", name="stdout", text="partial"))
    history.abandon()
    assert [(c.code, c.status) for c in saved] == [("running", None), ("queued", None)]
    assert saved[0].outputs[0]["text"] == "partial"
    history.on_message(cell_messages("a")[-1])  # nothing left open to finish
    assert len(saved) == 2


def test_a_client_queuing_without_end_keeps_only_the_newest(monkeypatch: Any) -> None:
    monkeypatch.setattr(jupyter_history, "MAX_OPEN", 3)
    history, saved = recorder()
    for i in range(5):
        history.started(*request(str(i), f"cell {i}"))
    assert len(history) == 3
    history.abandon()
    assert [c.code for c in saved] == ["cell 2", "cell 3", "cell 4"]


def test_output_of_exactly_the_limit_is_kept_without_a_marker() -> None:
    history, saved = recorder()
    history.started(*request("a", "fill"))
    for _ in range(2):
        history.on_message(reply_to("a", "stream", name="stdout", text="x" * 50))
    for msg in cell_messages("a")[3:]:  # reply, idle
        history.on_message(msg)
    [cell] = saved
    assert cell.outputs == [{"output_type": "stream", "name": "stdout", "text": "x" * 100}]


def test_the_marker_is_written_once_however_much_more_comes() -> None:
    history, saved = recorder()
    history.started(*request("a", "flood"))
    for _ in range(10):
        history.on_message(reply_to("a", "stream", name="stdout", text="x" * 60))
    for msg in cell_messages("a")[3:]:  # reply, idle
        history.on_message(msg)
    [cell] = saved
    assert cell.outputs[1] == {"output_type": "stream", "name": "stderr", "text":
                               "\n[Sandcell: output truncated after 100 bytes; the rest is not in this record]\n"}
    assert len(cell.outputs) == 2


def test_a_kernel_keeps_at_most_1000_open_cells_as_docs_jupyter_md_says() -> None:
    history, saved = recorder()
    for i in range(1001):
        history.started(*request(str(i), f"cell {i}"))
    assert len(history) == 1000
    history.abandon()
    assert saved[0].code == "cell 1"  # the oldest went


def test_a_kernel_message_without_a_parent_is_no_cells() -> None:
    """Kernels publish some status and output with an empty parent header; it belongs to no
    cell, even one whose client sent an empty msg_id."""
    history, saved = recorder()
    history.started(*request("", "odd id"))
    for msg in cell_messages("a"):
        history.on_message({**msg, "parent_header": {}})
    assert saved == [] and len(history) == 1
