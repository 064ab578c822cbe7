"""The history store and its notebook export, without Docker or HTTP."""

from __future__ import annotations

import doctest
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from sandcell_gateway.config import load_config
from sandcell_gateway.errors import KernelDied, NotFound
from sandcell_gateway.service import SandboxService
from sandcell_gateway import store as store_module
from sandcell_gateway.store import CellRecorder, HistoryStore

SBX = "sbx_0123456789abcdef"


def ev(msg_type: str, **content: Any) -> dict[str, Any]:
    return {"msg_type": msg_type, "content": content}


def record(code: str, *events: dict[str, Any]) -> CellRecorder:
    recorder = CellRecorder(code, started_at=100.0)
    for event in events:
        recorder.add(event)
    return recorder


def test_docstring_examples() -> None:
    results = doctest.testmod(store_module)
    assert results.attempted > 0 and results.failed == 0


def test_events_become_nbformat_outputs_in_order() -> None:
    cell = record(
        "print('a'); print('b'); display(x); 42",
        ev("status", execution_state="busy"),
        ev("execute_input", code="...", execution_count=3),
        ev("stream", name="stdout", text="a\n"),
        ev("stream", name="stdout", text="b\n"),
        ev("stream", name="stderr", text="warn\n"),
        ev("display_data", data={"text/plain": "x"}, metadata={}, transient={"display_id": "d1"}),
        ev("update_display_data", data={"text/plain": "y"}, metadata={},
           transient={"display_id": "d1"}),
        ev("execute_result", data={"text/plain": "42"}, metadata={}, execution_count=3),
        ev("execute_reply", status="ok", execution_count=3),
    ).finish(finished_at=100.5)
    assert cell.execution_count == 3 and cell.status == "ok"
    assert cell.outputs == [
        {"output_type": "stream", "name": "stdout", "text": "a\nb\n"},
        {"output_type": "stream", "name": "stderr", "text": "warn\n"},
        {"output_type": "display_data", "data": {"text/plain": "y"}, "metadata": {}},
        {"output_type": "execute_result", "data": {"text/plain": "42"}, "metadata": {},
         "execution_count": 3},
    ]


def test_clear_output_and_errors_and_gateway_notes() -> None:
    cell = record(
        "...",
        ev("stream", name="stdout", text="old\n"),
        ev("clear_output", wait=True),
        ev("stream", name="stdout", text="new\n"),
        ev("timeout", timeout=1),
        ev("error", ename="KeyboardInterrupt", evalue="", traceback=["tb"]),
        ev("execute_reply", status="error", execution_count=1),
    ).finish()
    assert [o["output_type"] for o in cell.outputs] == ["stream", "error"]
    assert cell.outputs[0]["text"] == "new\n"
    assert cell.notes == {"timeout": {"timeout": 1}}


@pytest.mark.anyio
async def test_history_round_trips_as_a_valid_notebook(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h" / "history.sqlite3")
    await store.open()
    try:
        await store.add_sandbox(SBX, "python", {"owner": "me"},
                                {"name": "python", "version": "3.11.2"})
        await store.add_cell(SBX, record("1+1", ev("execute_result", data={"text/plain": "2"},
                                                   metadata={}, execution_count=1),
                                         ev("execute_reply", status="ok",
                                            execution_count=1)).finish(finished_at=100.25))
        await store.add_cell(SBX, record("1/0", ev("error", ename="ZeroDivisionError",
                                                   evalue="division by zero",
                                                   traceback=["..."])).finish())
        notebook = await store.notebook(SBX)
        assert await store.notebook("sbx_ffffffffffffffff") is None
    finally:
        await store.close()
    assert notebook is not None
    nbformat.validate(nbformat.from_dict(notebook))
    assert notebook["metadata"]["kernelspec"]["language"] == "python"
    assert notebook["metadata"]["language_info"]["version"] == "3.11.2"
    assert notebook["metadata"]["sandcell"]["metadata"] == {"owner": "me"}
    first, second = notebook["cells"]
    assert first["source"] == "1+1" and first["execution_count"] == 1
    assert first["metadata"]["sandcell"]["duration"] == 0.25
    assert first["metadata"]["sandcell"]["status"] == "ok"
    assert second["outputs"][0]["ename"] == "ZeroDivisionError"
    assert (tmp_path / "h" / "history.sqlite3").stat().st_mode & 0o777 == 0o600


@pytest.mark.anyio
async def test_history_of_deleted_sandboxes_is_purged_after_retention(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "history.sqlite3")
    await store.open()
    try:
        await store.add_sandbox(SBX, "python", {}, {})
        await store.add_cell(SBX, record("1").finish())
        assert await store.purge(deleted_before=1e12) == 0  # still live: kept
        await store.mark_deleted(SBX)
        assert await store.notebook(SBX) is not None  # deleted, within retention
        assert await store.purge(deleted_before=1e12) == 1
        assert await store.notebook(SBX) is None
    finally:
        await store.close()


def test_store_path_defaults_under_xdg_data_home(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    config = load_config(gateway_id="gw1")
    assert config.store_path == tmp_path / "sandcell" / "sandcell-gw1.sqlite3"
    assert load_config(store_path="/x/h.db").store_path == Path("/x/h.db")


class FakeSandbox:
    """Just enough of a Sandbox for the service's execute path."""

    id = SBX
    template = "python"

    def __init__(self, alive: bool = True) -> None:
        self.alive = alive

    async def execute(self, code: str, timeout: float | None = None
                      ) -> AsyncIterator[dict[str, Any]]:
        if not self.alive:
            raise KernelDied("dead")
        yield {"seq": 0, "msg_type": "stream", "content": {"name": "stdout", "text": code}}
        yield {"seq": 1, "msg_type": "execute_reply",
               "content": {"status": "ok", "execution_count": 1}}


@pytest.mark.anyio
async def test_service_records_executions_but_not_refused_ones(tmp_path: Path) -> None:
    service = SandboxService(load_config(store_path=tmp_path / "h.sqlite3"), backend=None)  # type: ignore[arg-type]
    await service.store.open()
    try:
        await service.store.add_sandbox(SBX, "python", {}, {})
        service._sandboxes[SBX] = FakeSandbox()  # type: ignore[assignment]
        assert [e["seq"] async for e in service.execute(SBX, "hi", None)] == [0, 1]
        service._sandboxes[SBX] = FakeSandbox(alive=False)  # type: ignore[assignment]
        with pytest.raises(KernelDied):
            async for _ in service.execute(SBX, "refused", None):
                pass
        notebook = await service.notebook(SBX)
        with pytest.raises(NotFound):
            await service.notebook("sbx_ffffffffffffffff")
    finally:
        await service.store.close()
    assert [(c["source"], c["outputs"][0]["text"]) for c in notebook["cells"]] == [("hi", "hi")]
