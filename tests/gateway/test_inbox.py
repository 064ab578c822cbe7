"""Output caps (cells.OutputBudget) as the kernel connection's Inbox applies them."""

from __future__ import annotations

import doctest

from sandcell_gateway import cells
from sandcell_gateway.cells import CellEnd, OutputBudget
from sandcell_gateway.kernel import Inbox


def test_doctests() -> None:
    results = doctest.testmod(cells)
    assert results.failed == 0 and results.attempted >= 5


def test_a_cell_ends_after_its_reply_and_its_idle_in_either_order() -> None:
    reply = {"msg_type": "execute_reply", "content": {"status": "ok"}}
    busy = {"msg_type": "status", "content": {"execution_state": "busy"}}
    idle = {"msg_type": "status", "content": {"execution_state": "idle"}}
    for order in ([busy, reply, idle], [busy, idle, reply]):
        end = CellEnd()
        seen = [(end.see(msg), end.ending) for msg in order]
        # one of the two last messages came: the other follows at once
        assert seen == [(False, False), (False, True), (True, True)]


def test_every_kind_of_output_counts_against_the_budget() -> None:
    for kind, content in [("stream", {"name": "stdout", "text": "x" * 8}),
                          ("display_data", {"data": {"text/plain": "x" * 8}}),
                          ("update_display_data", {"data": {"text/plain": "x" * 8}}),
                          ("execute_result", {"data": {"text/plain": "x" * 8}})]:
        budget = OutputBudget(10, "dropped")
        msg = {"msg_type": kind, "content": content}
        assert budget.admit(msg) == [msg] and not budget.truncated, kind
        assert budget.admit(msg) != [msg] and budget.truncated, kind  # 16 bytes > 10
    status = {"msg_type": "status", "content": {"execution_state": "idle"}}
    assert budget.admit(status) == [status]  # never counted, never dropped


def _stream(text: str) -> dict:
    return {"msg_type": "stream", "content": {"name": "stdout", "text": text},
            "parent_header": {"msg_id": "m"}}


def _drain(inbox: Inbox) -> list[dict]:
    out = []
    while not inbox.empty():
        out.append(inbox.get_nowait())
    return out


def test_output_past_the_limit_is_dropped_with_one_marker() -> None:
    inbox = Inbox(limit=25)
    for _ in range(10):
        inbox.put_nowait(_stream("x" * 10))
    inbox.put_nowait({"msg_type": "status", "content": {"execution_state": "idle"},
                      "parent_header": {}})
    messages = _drain(inbox)
    texts = [m["content"].get("text") for m in messages]
    assert texts[:3] == ["x" * 10, "x" * 10, "x" * 5]  # the text that still fits
    assert "output truncated after 25 bytes" in texts[3] and messages[3]["content"]["name"] == "stderr"
    assert messages[4]["msg_type"] == "status" and len(messages) == 5
    assert inbox.truncated


def test_rich_output_counts_and_no_limit_keeps_everything() -> None:
    inbox = Inbox(limit=5)
    inbox.put_nowait({"msg_type": "display_data", "content": {"data": {"text/plain": "123456"}},
                      "parent_header": {}})
    assert "truncated" in _drain(inbox)[0]["content"]["text"]
    unlimited = Inbox()
    for _ in range(100):
        unlimited.put_nowait(_stream("y" * 1000))
    assert len(_drain(unlimited)) == 100 and not unlimited.truncated


def test_one_huge_stream_message_keeps_its_first_limit_bytes() -> None:
    inbox = Inbox(limit=100)
    inbox.put_nowait(_stream("y" * 10_000))  # one batched flush of a print loop
    texts = [m["content"]["text"] for m in _drain(inbox)]
    assert texts[0] == "y" * 100 and "truncated" in texts[1] and len(texts) == 2


# One of each UTF-8 width: 2 bytes (é), 3 bytes (€), 4 bytes (😀, outside the BMP).
WIDE = [("é", 2), ("€", 3), ("😀", 4)]


def test_the_limit_counts_utf8_bytes_not_characters() -> None:
    for char, width in WIDE:
        inbox = Inbox(limit=100)
        inbox.put_nowait(_stream(char * 1000))
        kept, marker = _drain(inbox)
        text = kept["content"]["text"]
        # the most whole characters that fit in 100 bytes; none is cut in half
        assert text == char * (100 // width), char
        assert len(text.encode()) <= 100 and "truncated after 100 bytes" in marker["content"]["text"]


def test_many_small_wide_messages_stop_at_the_byte_limit() -> None:
    inbox = Inbox(limit=100)
    for _ in range(100):
        inbox.put_nowait(_stream("€" * 10))  # 30 bytes each, 10 characters
    texts = [m["content"]["text"] for m in _drain(inbox)]
    assert texts[:3] == ["€" * 10] * 3 and texts[3] == "€" * 3  # 90 + 9 bytes
    assert "truncated" in texts[4] and len(texts) == 5


def test_rich_output_counts_utf8_bytes_and_a_lone_surrogate_does_not_break_the_count() -> None:
    inbox = Inbox(limit=10)
    inbox.put_nowait({"msg_type": "display_data", "parent_header": {},
                      "content": {"data": {"text/plain": "é" * 6}}})  # 6 characters, 12 bytes
    assert "truncated" in _drain(inbox)[0]["content"]["text"]
    json_bundle = Inbox(limit=10)
    json_bundle.put_nowait({"msg_type": "display_data", "parent_header": {},
                            "content": {"data": {"application/json": ["é" * 4]}}})  # 12 bytes
    assert "truncated" in _drain(json_bundle)[0]["content"]["text"]
    # JSON allows "\ud800"; a kernel sending it must be counted, not crash the reader
    lone = Inbox(limit=4)
    lone.put_nowait(_stream("\ud800\ud800"))
    assert [m["content"]["text"][:1] for m in _drain(lone)] == ["", "\n"]


def test_output_of_exactly_the_limit_is_kept_whole_and_the_next_byte_is_the_marker() -> None:
    inbox = Inbox(limit=20)
    for text in ("x" * 10, "x" * 10, "y"):
        inbox.put_nowait(_stream(text))
    messages = _drain(inbox)
    # nothing is cut from the 20 bytes that fit; no empty stream message precedes the marker
    assert [m["content"]["text"] for m in messages[:2]] == ["x" * 10] * 2 and len(messages) == 3
    assert messages[2]["content"]["text"] == (
        "\n[Sandcell: output truncated after 20 bytes; the rest of this cell's output is "
        "dropped]\n")  # docs/api.md quotes its start


def test_a_single_byte_of_room_keeps_a_single_byte() -> None:
    inbox = Inbox(limit=21)
    for text in ("x" * 10, "x" * 10, "y" * 10):
        inbox.put_nowait(_stream(text))
    assert [m["content"]["text"] for m in _drain(inbox)][:3] == ["x" * 10, "x" * 10, "y"]


def test_the_marker_after_rich_output_is_a_stderr_stream_of_the_same_request() -> None:
    inbox = Inbox(limit=5)
    inbox.put_nowait({"msg_type": "execute_result", "parent_header": {"msg_id": "m"},
                      "content": {"data": {"text/plain": "123456"}, "execution_count": 1}})
    (marker,) = _drain(inbox)
    assert marker["msg_type"] == "stream" and marker["parent_header"] == {"msg_id": "m"}
    assert marker["content"] == {"name": "stderr", "text": marker["content"]["text"]}
    assert "truncated after 5 bytes" in marker["content"]["text"]


def test_a_json_bundle_counts_its_utf8_bytes_not_its_escaped_form() -> None:
    # '["éééé"]' is 12 bytes as UTF-8; escaped (\u00e9) it would be 28
    inbox = Inbox(limit=12)
    bundle = {"msg_type": "display_data", "parent_header": {},
              "content": {"data": {"application/json": ["é" * 4]}}}
    inbox.put_nowait(bundle)
    assert _drain(inbox) == [bundle] and not inbox.truncated
    # a lone surrogate inside JSON data is counted (3 bytes), not a crash of the reader
    lone = Inbox(limit=8)
    lone.put_nowait({**bundle, "content": {"data": {"application/json": ["\ud800"]}}})
    assert _drain(lone)[0]["content"]["data"] == {"application/json": ["\ud800"]}
    assert not lone.truncated
