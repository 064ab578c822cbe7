"""The Jupyter WebSocket codec and the kernel bridge, without a kernel or a socket.

The codec is checked against Jupyter Server's own implementation of the same framings, so a
drift on either side shows up here.
"""

from __future__ import annotations

import doctest
import json
from typing import Any

import pytest
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)

from sandcell_gateway.jupyter_bridge import KernelBridge, ReplayBuffer
from sandcell_gateway.jupyter_channels import (
    V1_PROTOCOL,
    client_to_kernel,
    decode_v1,
    encode_v1,
    kernel_to_client,
    pack,
)
from sandcell_gateway import jupyter_messages
from sandcell_gateway.jupyter_messages import refusal, status_message
from sandcell_gateway.wire import kernel_id_of, sandbox_id_of


def message(msg_type: str = "execute_request", msg_id: str = "m1", parent: str = "",
            content: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"header": {"msg_id": msg_id, "msg_type": msg_type, "session": "s", "username": "u",
                       "version": "5.3", "date": "2026-01-01T00:00:00Z"},
            "msg_id": msg_id, "msg_type": msg_type,
            "parent_header": {"msg_id": parent} if parent else {},
            "metadata": {}, "content": content or {}, "buffers": []}


def test_gateway_messages_doctests() -> None:
    assert doctest.testmod(jupyter_messages).failed == 0


def test_v1_roundtrip_matches_jupyter_server() -> None:
    parts = [pack({"msg_id": "a"}), pack({}), pack({}), pack({"code": "1+1"}), b"\x00\x01"]
    ours = encode_v1("shell", parts)
    assert ours == serialize_msg_to_ws_v1(parts, "shell")
    assert decode_v1(ours) == deserialize_msg_from_ws_v1(ours)


def test_v1_decodes_what_jupyter_server_encodes() -> None:
    msg = message(content={"code": "print(1)"})
    frame = serialize_msg_to_ws_v1(msg, "control", pack)
    decoded = client_to_kernel(frame, V1_PROTOCOL)
    assert decoded.channel == "control"
    assert decoded.msg_id == "m1"
    assert json.loads(decoded.parts[3]) == {"code": "print(1)"}


def test_kernel_message_as_v1_frame() -> None:
    frame = kernel_to_client("iopub", message("stream", content={"text": "hi"}), V1_PROTOCOL)
    assert isinstance(frame, bytes)
    channel, parts = deserialize_msg_from_ws_v1(frame)
    assert channel == "iopub"
    assert json.loads(parts[3]) == {"text": "hi"}


def test_kernel_message_as_json_text() -> None:
    text = kernel_to_client("iopub", message("stream", parent="p", content={"text": "hi"}), None)
    assert isinstance(text, str)
    body = json.loads(text)
    assert body["channel"] == "iopub"
    assert body["msg_type"] == "stream"
    assert body["parent_header"] == {"msg_id": "p"}
    assert body["content"] == {"text": "hi"}


def test_kernel_message_with_buffers_uses_legacy_binary() -> None:
    msg = {**message("comm_msg"), "buffers": [b"\x01\x02"]}
    frame = kernel_to_client("iopub", msg, None)
    assert isinstance(frame, bytes)
    decoded = deserialize_binary_message(frame)
    assert decoded["channel"] == "iopub"
    assert decoded["buffers"] == [b"\x01\x02"]


def test_client_messages_say_whether_they_run_code() -> None:
    execute = client_to_kernel(json.dumps({**message(), "channel": "shell"}), None)
    complete = client_to_kernel(json.dumps({**message("complete_request"), "channel": "shell"}),
                                None)
    on_control = client_to_kernel(json.dumps({**message(), "channel": "control"}), None)
    assert [m.is_execution for m in (execute, complete, on_control)] == [True, False, False]


@pytest.mark.parametrize("protocol", [None, V1_PROTOCOL])
def test_a_refused_cell_reads_like_a_failed_one(protocol: str | None) -> None:
    """busy, error, execute_reply (error), idle: all answering the request, all decodable by
    Jupyter Server's codec."""
    request = message()["header"]
    decoded = []
    for channel, msg in refusal(request, "RateLimitError", "slow down"):
        frame = kernel_to_client(channel, msg, protocol)
        if protocol == V1_PROTOCOL:
            assert isinstance(frame, bytes)
            channel_of, parts = deserialize_msg_from_ws_v1(frame)
            header, parent, _, content = (json.loads(p) for p in parts[:4])
        else:
            body = json.loads(frame)
            channel_of, header, parent, content = (body["channel"], body["header"],
                                                   body["parent_header"], body["content"])
        assert parent["msg_id"] == "m1"
        decoded.append((channel_of, header["msg_type"], content))
    assert [(c, t) for c, t, _ in decoded] == [
        ("iopub", "status"), ("iopub", "error"), ("shell", "execute_reply"), ("iopub", "status")]
    assert decoded[2][2] == {"status": "error", "execution_count": None, "ename": "RateLimitError",
                             "evalue": "slow down", "traceback": ["RateLimitError: slow down"]}
    assert [decoded[0][2], decoded[3][2]] == [{"execution_state": "busy"},
                                              {"execution_state": "idle"}]


def test_client_json_and_legacy_binary() -> None:
    msg = {**message(content={"code": "1"}), "channel": "shell"}
    from_text = client_to_kernel(json.dumps(msg), None)
    assert (from_text.channel, from_text.msg_id) == ("shell", "m1")
    from_binary = client_to_kernel(serialize_binary_message({**msg, "buffers": [b"x"]}), None)
    assert from_binary.parts[4:] == [b"x"]
    assert json.loads(from_binary.parts[3]) == {"code": "1"}


@pytest.mark.parametrize("data", [
    json.dumps({**message(), "channel": "iopub"}),
    json.dumps({"channel": "shell", "header": {}}),
    json.dumps({"channel": "hb", **message()}),
    json.dumps([1, 2]),
    "not json",
    json.dumps({"channel": ["shell"], **message()}),  # unhashable channel
    json.dumps({**message(), "header": {"msg_id": "m1"}}),  # no msg_type
    json.dumps({**message(), "buffers": ["aGk="]}),  # buffers inside the JSON
    json.dumps({**message(), "buffers": 5}),
    "[" * 100_000,  # nested past the recursion limit
    b"\x00\x00\x00\x01\x00\x00\x00\x08[1]",  # legacy binary: JSON part not an object
    b"\x00\x00\x00\x03\x00\x00\x00\x10\x00\x00\x00\x08",  # offsets out of order
    b"\xff\xff\xff\xff",  # legacy binary: absurd offset count, truncated
])
def test_client_messages_we_cannot_send_are_refused(data: str | bytes) -> None:
    with pytest.raises((ValueError, RecursionError)):
        client_to_kernel(data, None)


@pytest.mark.parametrize("frame", [
    b"\x00" * 7,
    (3).to_bytes(8, "little") + (8 * 4).to_bytes(8, "little") * 3 + b"xx",  # offsets past end
    (1 << 60).to_bytes(8, "little") + b"\x00" * 16,
    encode_v1("iopub", [pack(message()["header"]), b"{}", b"{}", b"{}"]),
    encode_v1("shell", [b"\xff", b"{}", b"{}", b"{}"]),  # header not UTF-8
])
def test_bad_v1_frames_are_refused(frame: bytes) -> None:
    with pytest.raises(ValueError):
        client_to_kernel(frame, V1_PROTOCOL)


def test_a_message_without_channel_goes_to_shell() -> None:
    assert client_to_kernel(json.dumps(message()), None).channel == "shell"  # as Jupyter Server


def test_truncated_v1_frame_is_refused() -> None:
    frame = encode_v1("shell", [pack(message()["header"]), b"{}", b"{}", b"{}"])
    with pytest.raises(ValueError):
        decode_v1(frame[:20])


def test_status_message_is_a_kernel_message() -> None:
    body = json.loads(kernel_to_client("iopub", status_message("dead"), None))
    assert body["msg_type"] == "status"
    assert body["content"] == {"execution_state": "dead"}


def test_kernel_ids_fit_jupyter_server_routes() -> None:
    kid = kernel_id_of("sbx_0123456789abcdef")
    assert kid == "sbx-0123-4567-89ab-cdef"
    assert sandbox_id_of(kid) == "sbx_0123456789abcdef"
    assert sandbox_id_of("sbx_0123456789abcdef") == "sbx_0123456789abcdef"


def test_replay_buffer_drops_oldest_past_its_bounds() -> None:
    buffer = ReplayBuffer(max_messages=3, max_bytes=1 << 20)
    buffer.start("s")
    for i in range(5):
        buffer.add("iopub", message(content={"i": i}))
    assert [m["content"]["i"] for _, m in buffer.take("s")] == [2, 3, 4]
    assert len(buffer) == 0


def test_replay_buffer_bounds_bytes() -> None:
    buffer = ReplayBuffer(max_messages=100, max_bytes=120)  # ~53 bytes each
    buffer.start("s")
    for i in range(5):
        buffer.add("iopub", message(content={"text": "x" * 40 + str(i)}))
    kept = buffer.take("s")
    assert len(kept) == 2
    assert kept[-1][1]["content"]["text"].endswith("4")


def test_replay_goes_only_to_the_same_session() -> None:
    buffer = ReplayBuffer()
    buffer.start("s1")
    buffer.add("iopub", message())
    assert buffer.take("s2") == []
    assert buffer.take("s1") == []  # the other session's arrival dropped it


class FakeKernel:
    closed = False
    execution_state = "idle"
    death_reason = ""

    def __init__(self) -> None:
        self.subscribers: list[Any] = []
        self.sent: list[tuple[str, list[bytes]]] = []

    def subscribe(self, subscriber: Any) -> Any:
        self.subscribers.append(subscriber)
        return lambda: self.subscribers.remove(subscriber)

    async def send_parts(self, channel: str, parts: list[bytes]) -> None:
        self.sent.append((channel, parts))

    def emit(self, channel: str, msg: dict[str, Any] | None) -> None:
        for subscriber in list(self.subscribers):
            subscriber(channel, msg)


class FakeClient:
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.got: list[tuple[str, dict[str, Any]]] = []
        self.gone = False

    def deliver(self, channel: str, msg: dict[str, Any]) -> None:
        self.got.append((channel, msg))

    def kernel_gone(self) -> None:
        self.gone = True


def texts(client: FakeClient) -> list[str]:
    return [m["content"].get("text", m["msg_type"]) for _, m in client.got]


@pytest.mark.anyio
async def test_bridge_routes_replies_to_the_requesting_session() -> None:
    kernel = FakeKernel()
    bridge = KernelBridge("k", lambda: kernel)
    alice, bob = FakeClient("a"), FakeClient("b")
    bridge.attach(alice)
    bridge.attach(bob)
    await bridge.send(alice, "shell", [b"{}"] * 4, "req1")
    kernel.emit("iopub", message("stream", parent="req1", content={"text": "out"}))
    kernel.emit("shell", message("execute_reply", parent="req1"))
    kernel.emit("shell", message("execute_reply", parent="rest-call"))  # not a WebSocket's
    assert texts(alice) == ["out", "execute_reply"]
    assert texts(bob) == ["out"]
    assert kernel.sent == [("shell", [b"{}"] * 4)]


@pytest.mark.anyio
async def test_bridge_replays_what_a_dropped_client_missed() -> None:
    kernel = FakeKernel()
    bridge = KernelBridge("k", lambda: kernel)
    first = FakeClient("s")
    bridge.attach(first)
    await bridge.send(first, "shell", [b"{}"] * 4, "req")
    kernel.emit("iopub", message("stream", parent="req", content={"text": "1"}))
    unsent = [("iopub", message("stream", parent="req", content={"text": "2"}))]
    bridge.detach(first, unsent)
    kernel.emit("iopub", message("stream", parent="req", content={"text": "3"}))
    kernel.emit("shell", message("execute_reply", parent="req"))
    second = FakeClient("s")
    bridge.attach(second)
    kernel.emit("iopub", message("stream", parent="req", content={"text": "4"}))
    assert texts(first) == ["1"]
    assert texts(second) == ["2", "3", "execute_reply", "4"]


def test_bridge_closes_clients_when_the_kernel_is_gone() -> None:
    kernel = FakeKernel()
    forgotten: list[KernelBridge] = []
    resolve = lambda: None if kernel.closed else kernel  # noqa: E731
    bridge = KernelBridge("k", resolve, on_gone=forgotten.append)
    client = FakeClient("s")
    bridge.attach(client)
    kernel.closed = True
    kernel.emit("", None)
    assert client.gone
    assert forgotten == [bridge]


def test_a_cut_off_kernels_clients_are_told_why_in_their_cell() -> None:
    kernel = FakeKernel()
    resolve = lambda: None if kernel.closed else kernel  # noqa: E731
    bridge = KernelBridge("k", resolve)
    attacker, other = FakeClient("a"), FakeClient("b")
    bridge.attach(attacker)
    bridge.attach(other)
    bridge.note_execution(attacker, {"msg_id": "cell1", "msg_type": "execute_request"})
    kernel.closed, kernel.death_reason = True, "output message over the limit: 9 bytes"
    kernel.emit("", None)
    [(channel, error)] = attacker.got
    assert channel == "iopub" and error["msg_type"] == "error"
    assert error["content"]["ename"] == "kernel_died"
    assert "output message over the limit" in error["content"]["evalue"]
    assert error["parent_header"]["msg_id"] == "cell1"  # shown in the cell that ran it
    assert other.got[0][1]["parent_header"] == {}  # told too, in no cell of its own
    assert attacker.gone and other.gone


def test_bridge_follows_a_restart() -> None:
    kernels = [FakeKernel()]
    bridge = KernelBridge("k", lambda: kernels[-1])
    client = FakeClient("s")
    bridge.attach(client)
    kernels.append(FakeKernel())
    kernels[0].emit("", None)
    kernels[1].emit("iopub", message("status", content={"execution_state": "idle"}))
    assert not client.gone
    assert texts(client) == ["status"]


def test_bridge_counts_a_message_reaching_a_client_as_activity() -> None:
    kernel = FakeKernel()
    touches: list[str] = []
    bridge = KernelBridge("k", lambda: kernel, on_activity=lambda: touches.append("touch"))
    first = FakeClient("s")
    bridge.attach(first)  # nothing missed: no message reached it yet
    assert touches == []
    kernel.emit("iopub", message("stream", parent="x", content={"text": "1"}))
    assert touches == ["touch"]
    bridge.detach(first)
    kernel.emit("iopub", message("stream", parent="x", content={"text": "2"}))  # kept: no reader
    assert touches == ["touch"]
    second = FakeClient("s")
    bridge.attach(second)  # the kept message reaches it
    assert texts(second) == ["2"] and touches == ["touch", "touch"]
