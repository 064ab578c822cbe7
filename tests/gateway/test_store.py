"""The history store and its notebook export, without Docker or HTTP."""

from __future__ import annotations

import dataclasses
import doctest
import json
import sqlite3
from pathlib import Path
from typing import Any

import nbformat
import pytest

from sandcell_gateway.config import TenantConfig, load_config
from sandcell_gateway.errors import KernelDied, NotFound
from sandcell_gateway.fake_runtime import FakeRuntime
from sandcell_gateway.service import SandboxService
from sandcell_gateway import store as store_module
from sandcell_gateway.store import (SCHEMA_VERSION, CellRecorder, HistoryStore, SandboxRecord,
                                    StoreVersionError)
from sandcell_gateway.tenants import Tenant

from .kernels import EchoSandboxes

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
        await store.add_sandbox(SandboxRecord(SBX, "python", metadata={"owner": "me"},
                                              language_info={"name": "python",
                                                             "version": "3.11.2"}))
        await store.add_cell(SBX, record("1+1", ev("execute_result", data={"text/plain": "2"},
                                                   metadata={}, execution_count=1),
                                         ev("execute_reply", status="ok",
                                            execution_count=1)).finish(finished_at=100.25))
        await store.add_cell(SBX, record("1/0", ev("error", ename="ZeroDivisionError",
                                                   evalue="division by zero",
                                                   traceback=["..."])).finish())
        notebook = await store.notebook(SBX, "default")
        assert await store.notebook("sbx_ffffffffffffffff", "default") is None
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
        await store.add_sandbox(SandboxRecord(SBX, "python"))
        await store.add_cell(SBX, record("1").finish())
        assert await store.purge(deleted_before=1e12) == 0  # still live: kept
        await store.mark_deleted(SBX)
        assert await store.notebook(SBX, "default") is not None  # deleted, within retention
        assert await store.purge(deleted_before=1e12) == 1
        assert await store.notebook(SBX, "default") is None
    finally:
        await store.close()


def test_store_path_defaults_under_xdg_data_home(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    config = load_config(gateway_id="gw1")
    assert config.store_path == tmp_path / "sandcell" / "sandcell-gw1.sqlite3"
    assert load_config(store_path="/x/h.db").store_path == Path("/x/h.db")


DEFAULT = Tenant.from_config(TenantConfig("default"))


@pytest.mark.anyio
async def test_service_records_executions_but_not_refused_ones(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.sqlite3")
    service = SandboxService(load_config(store_path=store.path), FakeRuntime(), store)
    sandboxes = EchoSandboxes()
    sandboxes.pool(service)
    await service.store.open()
    try:
        sandbox = await service.create(DEFAULT)
        events = [e async for e in service.execute(sandbox.id, DEFAULT, "hi", None)]
        assert [e["seq"] for e in events] == list(range(len(events)))
        assert [e["msg_type"] for e in events if e["msg_type"] != "status"] == \
            ["stream", "execute_reply"]
        sandbox.mark_dead("its process exited with code 1")
        with pytest.raises(KernelDied):
            async for _ in service.execute(sandbox.id, DEFAULT, "refused", None):
                pass
        notebook = await service.notebook(sandbox.id, DEFAULT)
        with pytest.raises(NotFound):
            await service.notebook("sbx_ffffffffffffffff", DEFAULT)
    finally:
        await service.close()
        sandboxes.close()
    assert [(c["source"], c["outputs"][0]["text"]) for c in notebook["cells"]] == [("hi", "hi")]


# The schema as the first release wrote it (no user_version): a user's store file looks so.
V1_SCHEMA = """
CREATE TABLE sandboxes (id TEXT PRIMARY KEY, template TEXT NOT NULL, created_at REAL NOT NULL,
    deleted_at REAL, metadata TEXT NOT NULL, language_info TEXT NOT NULL);
CREATE TABLE cells (sandbox_id TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
    position INTEGER NOT NULL, code TEXT NOT NULL, execution_count INTEGER, status TEXT,
    started_at REAL NOT NULL, finished_at REAL NOT NULL, outputs TEXT NOT NULL,
    notes TEXT NOT NULL, PRIMARY KEY (sandbox_id, position));
"""
OTHER = "sbx_fedcba9876543210"


def old_store(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.execute("INSERT INTO sandboxes VALUES (?, 'python', 10.0, NULL, '{\"a\": \"b\"}', '{}')",
               (SBX,))
    db.execute("INSERT INTO sandboxes VALUES (?, 'python', 10.0, 20.0, '{}', '{}')", (OTHER,))
    db.execute("INSERT INTO cells VALUES (?, 0, 'x = 1', 1, 'ok', 11.0, 12.0, '[]', '{}')", (SBX,))
    db.commit()
    db.close()


@pytest.mark.anyio
async def test_a_store_from_the_first_schema_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old_store(path)
    store = HistoryStore(path)
    await store.open()
    try:
        live = await store.live_sandboxes()
        notebook = await store.notebook(SBX, "default")
        await store.add_sandbox(SandboxRecord("sbx_1111111111111111", "python"))
    finally:
        await store.close()
    # the old live row comes back with the new fields' defaults: no container to adopt
    assert live == [SandboxRecord(SBX, "python", created_at=10.0, metadata={"a": "b"})]
    assert live[0].container_id == "" and live[0].instance_id == SBX
    assert notebook is not None and [c["source"] for c in notebook["cells"]] == ["x = 1"]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    db.close()
    store = HistoryStore(path)  # opening again is a no-op, not a second ALTER TABLE
    await store.open()
    await store.close()


@pytest.mark.anyio
async def test_a_store_from_a_newer_sandcell_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    store = HistoryStore(path)
    with pytest.raises(StoreVersionError, match="newer Sandcell"):
        await store.open()
    await store.close()


@pytest.mark.anyio
async def test_session_records_round_trip_restart_and_delete(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "s.sqlite3")
    await store.open()
    record = SandboxRecord(SBX, "python", container_id="c1", tenant="acme", created_at=5.0,
                           expires_at=65.0, metadata={"m": "1"}, env={"E": "2"},
                           language_info={"name": "python"})
    try:
        await store.add_sandbox(record)
        assert await store.live_sandboxes() == [record]
        await store.update_container(SBX, OTHER, "c2", {"name": "python", "version": "3"})
        restarted = dataclasses.replace(record, instance_id=OTHER, container_id="c2",
                                        language_info={"name": "python", "version": "3"})
        assert await store.live_sandboxes() == [restarted]
        await store.mark_deleted(SBX, "expired")
        assert await store.live_sandboxes() == []
        notebook = await store.notebook(SBX, "acme")
        assert await store.notebook(SBX, "default") is None  # only its owner reads it
    finally:
        await store.close()
    assert notebook is not None and notebook["metadata"]["sandcell"]["deleted_reason"] == "expired"
    assert json.dumps(notebook)  # still a plain JSON document


@pytest.mark.anyio
async def test_jupyter_sessions_live_as_long_as_their_sandbox(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "s.sqlite3")
    await store.open()
    session = {"id": "5b1c", "sandbox_id": SBX, "tenant": "acme", "path": "a.ipynb",
               "name": "a", "type": "notebook"}
    try:
        await store.add_sandbox(SandboxRecord(SBX, "python", tenant="acme"))
        await store.add_sandbox(SandboxRecord(OTHER, "python", tenant="acme"))
        await store.put_jupyter_session(session)
        await store.put_jupyter_session({**session, "id": "gone", "sandbox_id": OTHER})
        await store.put_jupyter_session({**session, "path": "b.ipynb"})  # a rename replaces
        await store.mark_deleted(OTHER)  # its session ends with it
        assert await store.jupyter_sessions() == [{**session, "path": "b.ipynb"}]
        await store.delete_jupyter_session("5b1c")
        assert await store.jupyter_sessions() == []
        await store.put_jupyter_session(session)
        assert await store.purge(deleted_before=1e12) == 1  # OTHER, with its session
    finally:
        await store.close()
    db = sqlite3.connect(tmp_path / "s.sqlite3")
    assert db.execute("SELECT id FROM jupyter_sessions").fetchall() == [("5b1c",)]
    db.close()
