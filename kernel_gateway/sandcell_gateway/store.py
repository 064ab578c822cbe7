"""Session history in an embedded SQLite store, and its export as a Jupyter notebook.

Every execution a client asks for is recorded when it finishes: its code, its outputs already
in nbformat's shape, its execution count and its timings. ``GET /api/v1/sandboxes/{id}/notebook``
turns a sandbox's history into a ``.ipynb`` document (nbformat 4.5).

The same file keeps each claimed sandbox's :class:`SandboxRecord`: what a gateway restarted
after a crash needs to re-adopt the sandbox's still-running container. Its ``env`` (mostly
secrets) is sealed with AES-GCM under a key file beside the store (see sealing.py): the file
never holds an env value in clear. ``PRAGMA user_version`` numbers the schema;
:data:`MIGRATIONS` bring an older file up to date when it is opened.

SQLite calls are blocking; they run on one dedicated thread that owns the connection, so the
event loop never waits on a disk sync and the connection is never shared between threads.

Example::

    store = HistoryStore(Path("/tmp/history.sqlite3"))
    await store.open()
    await store.add_sandbox(SandboxRecord("sbx_0123456789abcdef", "python"))
    recorder = CellRecorder("1+1")
    for event in events:
        recorder.add(event)
    await store.add_cell("sbx_0123456789abcdef", recorder.finish())
    notebook = await store.notebook("sbx_0123456789abcdef", "default")
    await store.close()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from . import fastjson
from .sealing import EnvSealer, UnsealError, key_path_for
from .wire import iso_time

log = logging.getLogger(__name__)

T = TypeVar("T")

# Version 1 is the schema before versioning (such files say user_version 0): creating it is
# a no-op on them, so every file replays the same steps from its own version on.
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS sandboxes (
    id TEXT PRIMARY KEY,
    template TEXT NOT NULL,
    created_at REAL NOT NULL,
    deleted_at REAL,
    metadata TEXT NOT NULL,
    language_info TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cells (
    sandbox_id TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    code TEXT NOT NULL,
    execution_count INTEGER,
    status TEXT,
    started_at REAL NOT NULL,
    finished_at REAL NOT NULL,
    outputs TEXT NOT NULL,
    notes TEXT NOT NULL,
    PRIMARY KEY (sandbox_id, position)
);
"""
# Version 2: what re-adoption needs. ``instance_id`` names the container (its
# org.sandcell.sandbox label and connection directory); it differs from ``id`` once a
# restart swapped the container under the same public id.
SCHEMA_V2 = """
ALTER TABLE sandboxes ADD COLUMN instance_id TEXT;
ALTER TABLE sandboxes ADD COLUMN container_id TEXT;
ALTER TABLE sandboxes ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
ALTER TABLE sandboxes ADD COLUMN expires_at REAL;
ALTER TABLE sandboxes ADD COLUMN env TEXT NOT NULL DEFAULT '{}';
ALTER TABLE sandboxes ADD COLUMN deleted_reason TEXT;
"""
# Version 3: Jupyter's /api/sessions (a notebook path bound to a kernel) survive a crash too.
SCHEMA_V3 = """
CREATE TABLE jupyter_sessions (
    id TEXT PRIMARY KEY,
    sandbox_id TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
    tenant TEXT NOT NULL,
    path TEXT NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL
);
"""


def seal_clear_env(db: sqlite3.Connection, sealer: EnvSealer) -> None:
    """Version 4: ``sandboxes.env`` holds a sealed token, never the values in clear. A live
    row's env is sealed (its sandbox may still be re-adopted); a deleted row's is dropped."""
    rows = db.execute("SELECT id, env, deleted_at FROM sandboxes").fetchall()
    for sandbox_id, env, deleted_at in rows:
        clear = {} if deleted_at is not None else json.loads(env)
        db.execute("UPDATE sandboxes SET env = ? WHERE id = ?",
                   (sealer.seal(clear, sandbox_id), sandbox_id))


# A step is SQL, or a function of the connection and the sealer (what SQL cannot do).
Migration = str | Callable[[sqlite3.Connection, EnvSealer], None]
MIGRATIONS: tuple[Migration, ...] = (SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, seal_clear_env)
SCHEMA_VERSION = len(MIGRATIONS)
# the first version whose file holds no env value in clear
SEALED_ENV_VERSION = MIGRATIONS.index(seal_clear_env) + 1


class StoreVersionError(RuntimeError):
    """The store file was written by a newer Sandcell; opening it could lose data."""


@dataclasses.dataclass
class SandboxRecord:
    """A claimed sandbox as the store keeps it: enough to re-adopt it after a crash."""

    id: str
    template: str
    instance_id: str = ""  # the container's sandbox label; "" means the same as ``id``
    container_id: str = ""
    tenant: str = "default"
    created_at: float = dataclasses.field(default_factory=time.time)
    expires_at: float = 0.0
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    language_info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.instance_id = self.instance_id or self.id


@dataclasses.dataclass
class CellRecord:
    """One finished execution, outputs already in nbformat's ``outputs`` shape."""

    code: str
    execution_count: int | None
    status: str | None  # the kernel's reply status; None if the stream ended without one
    started_at: float
    finished_at: float
    outputs: list[dict[str, Any]]
    notes: dict[str, Any]  # gateway events that are not outputs: timeout, gateway_error


class CellRecorder:
    """Folds one execution's events into a :class:`CellRecord`, as a notebook front end would.

    >>> rec = CellRecorder("print(1)", started_at=0.0)
    >>> rec.add({"msg_type": "stream", "content": {"name": "stdout", "text": "1\\n"}})
    >>> rec.add({"msg_type": "execute_reply", "content": {"status": "ok", "execution_count": 1}})
    >>> rec.finish(finished_at=0.5).outputs
    [{'output_type': 'stream', 'name': 'stdout', 'text': '1\\n'}]
    """

    def __init__(self, code: str, started_at: float | None = None) -> None:
        self.record = CellRecord(code, None, None, time.time() if started_at is None else started_at,
                                 0.0, [], {})
        self._display_ids: dict[int, str] = {}  # output index -> display_id
        self._clear_pending = False

    def add(self, event: dict[str, Any]) -> None:
        msg_type, content = event["msg_type"], event.get("content", {})
        handler = _HANDLERS.get(msg_type)
        if handler is not None:
            handler(self, content)

    def finish(self, finished_at: float | None = None) -> CellRecord:
        self.record.finished_at = time.time() if finished_at is None else finished_at
        for output in self.record.outputs:
            if output["output_type"] == "stream" and isinstance(output["text"], list):
                output["text"] = "".join(output["text"])
        return self.record

    def _output(self, output: dict[str, Any], display_id: str | None = None) -> None:
        if self._clear_pending:
            self._clear_now()
        outputs = self.record.outputs
        last = outputs[-1] if outputs else None
        if (output["output_type"] == "stream" and last is not None
                and last["output_type"] == "stream" and last["name"] == output["name"]):
            # Jupyter front ends merge consecutive chunks too; joined once, in finish()
            last["text"].extend(output["text"])
            return
        if display_id is not None:
            self._display_ids[len(outputs)] = display_id
        outputs.append(output)

    def _clear_now(self) -> None:
        self._clear_pending = False
        self.record.outputs.clear()
        self._display_ids.clear()

    def _stream(self, content: dict[str, Any]) -> None:
        self._output({"output_type": "stream", "name": content.get("name", "stdout"),
                      "text": [str(content.get("text", ""))]})

    def _display(self, content: dict[str, Any]) -> None:
        self._output({"output_type": "display_data", **_bundle(content)}, _display_id(content))

    def _update_display(self, content: dict[str, Any]) -> None:
        display_id = _display_id(content)
        for index, known in self._display_ids.items():
            if known == display_id:
                self.record.outputs[index].update(_bundle(content))

    def _execute_result(self, content: dict[str, Any]) -> None:
        self._count(content)
        self._output({"output_type": "execute_result", **_bundle(content),
                      "execution_count": content.get("execution_count")})

    def _error(self, content: dict[str, Any]) -> None:
        self._output({"output_type": "error", "ename": str(content.get("ename", "")),
                      "evalue": str(content.get("evalue", "")),
                      "traceback": [str(line) for line in content.get("traceback") or []]})

    def _clear(self, content: dict[str, Any]) -> None:
        self._clear_pending = True
        if not content.get("wait"):
            self._clear_now()

    def _count(self, content: dict[str, Any]) -> None:
        if isinstance(content.get("execution_count"), int):
            self.record.execution_count = content["execution_count"]

    def _reply(self, content: dict[str, Any]) -> None:
        self._count(content)
        self.record.status = content.get("status")


def _note(name: str) -> Callable[[CellRecorder, dict[str, Any]], None]:
    def note(recorder: CellRecorder, content: dict[str, Any]) -> None:
        recorder.record.notes[name] = content
    return note


def _bundle(content: dict[str, Any]) -> dict[str, Any]:
    return {"data": dict(content.get("data") or {}), "metadata": dict(content.get("metadata") or {})}


def _display_id(content: dict[str, Any]) -> str | None:
    display_id = (content.get("transient") or {}).get("display_id")
    return display_id if isinstance(display_id, str) else None


_HANDLERS: dict[str, Callable[[CellRecorder, dict[str, Any]], None]] = {
    "stream": CellRecorder._stream,
    "display_data": CellRecorder._display,
    "update_display_data": CellRecorder._update_display,
    "execute_result": CellRecorder._execute_result,
    "error": CellRecorder._error,
    "clear_output": CellRecorder._clear,
    "execute_input": CellRecorder._count,
    "execute_reply": CellRecorder._reply,
    "timeout": _note("timeout"),
    "gateway_error": _note("gateway_error"),
}


class HistoryStore:
    """Sandboxes and their executed cells in one SQLite file; see the module docstring."""

    def __init__(self, path: Path, key_path: Path | None = None) -> None:
        self.path = path
        self.key_path = key_path or key_path_for(path)
        self._sealer: EnvSealer | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
        sealer = EnvSealer.from_key_file(self.key_path)  # refuses a key others could read
        db = sqlite3.connect(self.path, isolation_level=None)  # autocommit; one writer thread
        # zero what a row's update or delete frees, so no old value lingers in free space
        db.execute("PRAGMA secure_delete=ON")
        db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives a gateway crash (kill -9), only an OS crash or power
        # loss can drop the last commits; FULL would fsync on every cell.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        try:
            migrate(db, sealer)
        except BaseException:
            db.close()
            raise
        self.path.chmod(0o600)  # code and outputs may hold secrets
        self._db, self._sealer = db, sealer

    @property
    def is_open(self) -> bool:
        return self._db is not None

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "HistoryStore.open() was not awaited"
        return self._db

    @property
    def sealer(self) -> EnvSealer:
        assert self._sealer is not None, "HistoryStore.open() was not awaited"
        return self._sealer

    async def add_sandbox(self, record: SandboxRecord) -> None:
        await self._run(self.db.execute, f"INSERT INTO sandboxes ({RECORD_COLUMNS}) VALUES "
                        f"({', '.join('?' * len(RECORD_FIELDS))})", _row(record, self.sealer))

    async def update_container(self, sandbox_id: str, instance_id: str, container_id: str,
                               language_info: dict[str, Any]) -> None:
        """A restart swapped the sandbox's container: adopt the new one after a crash."""
        await self._run(self.db.execute, "UPDATE sandboxes SET instance_id = ?, container_id = ?,"
                        " language_info = ? WHERE id = ?",
                        (instance_id, container_id, json.dumps(language_info), sandbox_id))

    async def live_sandboxes(self) -> list[SandboxRecord]:
        """Records not deleted: the sandboxes a crashed run of this gateway left claimed."""
        rows = await self._run(lambda: self.db.execute(
            f"SELECT {RECORD_COLUMNS} FROM sandboxes WHERE deleted_at IS NULL").fetchall())
        return [_record(row, self.sealer) for row in rows]

    async def mark_deleted(self, sandbox_id: str, reason: str = "deleted") -> None:
        await self._run(self.db.execute, "UPDATE sandboxes SET deleted_at = ?, deleted_reason = ?"
                        " WHERE id = ? AND deleted_at IS NULL", (time.time(), reason, sandbox_id))

    async def mark_all_deleted(self, reason: str) -> None:
        await self._run(self.db.execute, "UPDATE sandboxes SET deleted_at = ?, deleted_reason = ?"
                        " WHERE deleted_at IS NULL", (time.time(), reason))

    async def put_jupyter_session(self, session: dict[str, str]) -> None:
        """Insert or replace a Jupyter session (its :data:`JUPYTER_SESSION_COLUMNS`)."""
        await self._run(self.db.execute, f"INSERT OR REPLACE INTO jupyter_sessions "
                        f"({', '.join(JUPYTER_SESSION_COLUMNS)}) VALUES "
                        f"({', '.join('?' * len(JUPYTER_SESSION_COLUMNS))})",
                        tuple(session[name] for name in JUPYTER_SESSION_COLUMNS))

    async def delete_jupyter_session(self, session_id: str) -> None:
        await self._run(self.db.execute, "DELETE FROM jupyter_sessions WHERE id = ?",
                        (session_id,))

    async def jupyter_sessions(self) -> list[dict[str, str]]:
        """The Jupyter sessions whose sandbox is not deleted."""
        rows = await self._run(lambda: self.db.execute(
            f"SELECT {', '.join('j.' + name for name in JUPYTER_SESSION_COLUMNS)} FROM jupyter_sessions j"
            " JOIN sandboxes s ON s.id = j.sandbox_id WHERE s.deleted_at IS NULL").fetchall())
        return [dict(zip(JUPYTER_SESSION_COLUMNS, row)) for row in rows]

    async def add_cell(self, sandbox_id: str, cell: CellRecord) -> None:
        await self._run(self._add_cell, sandbox_id, cell)

    def _add_cell(self, sandbox_id: str, cell: CellRecord) -> None:
        self.db.execute(
            "INSERT INTO cells VALUES (?, (SELECT COUNT(*) FROM cells WHERE sandbox_id = ?),"
            " ?, ?, ?, ?, ?, ?, ?)",
            (sandbox_id, sandbox_id, cell.code, cell.execution_count, cell.status,
             cell.started_at, cell.finished_at, fastjson.dumps(cell.outputs).decode(),
             json.dumps(cell.notes)))

    async def purge(self, deleted_before: float) -> int:
        """Forget sandboxes deleted before ``deleted_before``; return how many."""
        cursor = await self._run(self.db.execute, "DELETE FROM sandboxes WHERE deleted_at < ?",
                                 (deleted_before,))
        return cursor.rowcount

    async def notebook(self, sandbox_id: str, tenant: str) -> dict[str, Any] | None:
        """``tenant``'s sandbox's history as an nbformat 4.5 notebook; ``None`` if it is not
        known (or is another tenant's)."""
        return await self._run(self._notebook, sandbox_id, tenant)

    def _notebook(self, sandbox_id: str, tenant: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT template, created_at, deleted_at, deleted_reason, metadata,"
                              " language_info FROM sandboxes WHERE id = ? AND tenant = ?",
                              (sandbox_id, tenant)).fetchone()
        if row is None:
            return None
        template, created_at, deleted_at, deleted_reason, metadata, language_info = row
        cells = self.db.execute("SELECT position, code, execution_count, status, started_at, "
                                "finished_at, outputs, notes FROM cells WHERE sandbox_id = ? "
                                "ORDER BY position", (sandbox_id,)).fetchall()
        sandcell = {"sandbox_id": sandbox_id, "template": template, "created_at": iso_time(created_at),
                    "deleted_at": iso_time(deleted_at) if deleted_at else None,
                    "deleted_reason": deleted_reason,
                    "metadata": json.loads(metadata)}
        return notebook_document([_cell(*cell) for cell in cells], template,
                                 json.loads(language_info), sandcell)

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)


async def remember(operation: Awaitable[None]) -> None:
    """Await a store write; a failure is logged, never raised: the store keeps history and
    recovery state, so a full disk must not fail the request that wrote it."""
    try:
        await operation
    except Exception:
        log.exception("could not write to the history store")


def migrate(db: sqlite3.Connection, sealer: EnvSealer) -> None:
    """Bring the file to :data:`SCHEMA_VERSION`, one transaction per step."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreVersionError(f"the store was written by a newer Sandcell (schema {version}, "
                                f"this one knows {SCHEMA_VERSION}); upgrade Sandcell")
    for step in range(version, SCHEMA_VERSION):
        _migrate_step(db, sealer, step)
    if version < SEALED_ENV_VERSION:
        scrub(db)


def _migrate_step(db: sqlite3.Connection, sealer: EnvSealer, step: int) -> None:
    migration = MIGRATIONS[step]
    if isinstance(migration, str):
        db.executescript(f"BEGIN; {migration} PRAGMA user_version = {step + 1}; COMMIT;")
        return
    db.execute("BEGIN")
    try:
        migration(db, sealer)
        db.execute(f"PRAGMA user_version = {step + 1}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def scrub(db: sqlite3.Connection) -> None:
    """Leave no copy of a value the migration sealed: VACUUM rewrites the file from its live
    rows, and a truncating checkpoint empties the WAL, which held the old pages too."""
    db.execute("VACUUM")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


JUPYTER_SESSION_COLUMNS = ("id", "sandbox_id", "tenant", "path", "name", "type")
RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(SandboxRecord))
RECORD_COLUMNS = ", ".join(RECORD_FIELDS)
JSON_FIELDS = frozenset({"metadata", "env", "language_info"})


def _row(record: SandboxRecord, sealer: EnvSealer) -> tuple[Any, ...]:
    return tuple(sealer.seal(record.env, record.id) if name == "env"
                 else json.dumps(getattr(record, name)) if name in JSON_FIELDS
                 else getattr(record, name) for name in RECORD_FIELDS)


def _record(row: tuple[Any, ...], sealer: EnvSealer) -> SandboxRecord:
    """A row back into a record; a row migrated from version 1 has NULLs where it knew less."""
    values = {name: json.loads(value) if name in JSON_FIELDS - {"env"} else value
              for name, value in zip(RECORD_FIELDS, row)}
    values = {name: value for name, value in values.items() if value is not None}
    values["env"] = _unseal(sealer, values["env"], values["id"])
    return SandboxRecord(**values)


def _unseal(sealer: EnvSealer, token: str, sandbox_id: str) -> dict[str, str]:
    """The record's env; a token this key cannot open (the key file was replaced) costs only
    the env's re-apply on a later restart, not the re-adoption of the sandbox."""
    try:
        return sealer.open(token, sandbox_id)
    except UnsealError as exc:
        log.warning("%s; its env is not re-applied if it is restarted", exc)
        return {}


def _cell(position: int, code: str, execution_count: int | None, status: str | None,
          started_at: float, finished_at: float, outputs: str, notes: str) -> dict[str, Any]:
    """One code cell; timings use JupyterLab's ``execution`` metadata keys, so its
    "record timing" display shows them, plus Sandcell's own summary."""
    timing = {"status": status, "started": iso_time(started_at), "finished": iso_time(finished_at),
              "duration": round(finished_at - started_at, 6), **json.loads(notes)}
    return {
        "cell_type": "code", "id": f"cell-{position}", "source": code,
        "execution_count": execution_count, "outputs": json.loads(outputs),
        "metadata": {"execution": {"iopub.execute_input": iso_time(started_at),
                                   "shell.execute_reply": iso_time(finished_at)},
                     "sandcell": timing},
    }


def notebook_document(cells: list[dict[str, Any]], template: str,
                      language_info: dict[str, Any], sandcell: dict[str, Any]) -> dict[str, Any]:
    language = str(language_info.get("name") or "python")
    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3" if language == "python" else language,
                           "display_name": f"{language.capitalize()} (Sandcell {template})",
                           "language": language},
            "language_info": {"name": language, **language_info},
            "sandcell": sandcell,
        },
        "cells": cells,
    }
