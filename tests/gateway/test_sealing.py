"""Env values sealed at rest: the key file, the store's sealed column, the migration."""

from __future__ import annotations

import doctest
import os
import sqlite3
from pathlib import Path

import pytest

from sandcell_gateway import sealing
from sandcell_gateway.config import ConfigError
from sandcell_gateway.sealing import EnvSealer, StoreKeyError, key_path_for
from sandcell_gateway.store import SCHEMA_VERSION, HistoryStore, SandboxRecord

SBX = "sbx_0123456789abcdef"
GONE = "sbx_fedcba9876543210"
SECRET = "sk-live-0123456789abcdefSECRET"


def store_bytes(path: Path) -> bytes:
    """The store file and its WAL and shared-memory files, as a thief would copy them."""
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
                    if p.exists())


def test_docstring_examples() -> None:
    results = doctest.testmod(sealing)
    assert results.attempted > 0 and results.failed == 0


def test_the_key_file_is_created_0600_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3.key"
    token = EnvSealer.from_key_file(path).seal({"K": SECRET}, SBX)
    assert path.stat().st_mode & 0o777 == 0o600 and path.stat().st_size == 32
    assert EnvSealer.from_key_file(path).open(token, SBX) == {"K": SECRET}
    assert SECRET not in token


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o666])
def test_a_key_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "s.sqlite3.key"
    EnvSealer.from_key_file(path)
    path.chmod(mode)
    with pytest.raises(StoreKeyError, match=rf"mode {mode:04o}.*chmod 600 {path}"):
        EnvSealer.from_key_file(path)
    assert issubclass(StoreKeyError, ConfigError)  # the CLI prints it and exits 2


@pytest.mark.skipif(os.getuid() != 0, reason="only root can give a file to another user (CI runs as root)")
def test_a_key_file_of_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3.key"
    EnvSealer.from_key_file(path)
    os.chown(path, 4321, 4321)
    with pytest.raises(StoreKeyError, match=r"belongs to uid 4321.*chown it"):
        EnvSealer.from_key_file(path)


def test_a_symlinked_or_short_key_file_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.key"
    EnvSealer.from_key_file(real)
    link = tmp_path / "link.key"
    link.symlink_to(real)
    with pytest.raises(StoreKeyError, match="not a symlink"):
        EnvSealer.from_key_file(link)
    real.write_bytes(b"short")
    with pytest.raises(StoreKeyError, match="5 bytes, not 32"):
        EnvSealer.from_key_file(real)


@pytest.mark.anyio
async def test_the_store_keeps_env_sealed_and_gives_it_back(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = HistoryStore(path)
    await store.open()
    record = SandboxRecord(SBX, "python", container_id="c1", env={"OPENAI_API_KEY": SECRET})
    try:
        await store.add_sandbox(record)
        assert await store.live_sandboxes() == [record]
        assert SECRET.encode() not in store_bytes(path)
    finally:
        await store.close()
    assert key_path_for(path).stat().st_mode & 0o777 == 0o600
    assert SECRET.encode() not in store_bytes(path)


@pytest.mark.anyio
async def test_a_refused_key_file_stops_the_store_from_opening(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    EnvSealer.from_key_file(key_path_for(path))
    key_path_for(path).chmod(0o644)
    store = HistoryStore(path)
    with pytest.raises(StoreKeyError, match="chmod 600"):
        await store.open()
    await store.close()


@pytest.mark.anyio
async def test_a_replaced_key_keeps_the_record_but_not_its_env(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = HistoryStore(path)
    await store.open()
    await store.add_sandbox(SandboxRecord(SBX, "python", created_at=1.0, env={"K": SECRET}))
    await store.close()
    key_path_for(path).unlink()  # a new key is made: the old token no longer opens
    store = HistoryStore(path)
    await store.open()
    try:
        assert await store.live_sandboxes() == [SandboxRecord(SBX, "python", created_at=1.0)]
    finally:
        await store.close()


def version_3_store(path: Path) -> None:
    """A store as Sandcell wrote it before sealing: env values in clear."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(V3_SCHEMA)
    for sandbox_id, deleted_at in ((SBX, None), (GONE, 20.0)):
        db.execute("INSERT INTO sandboxes (id, template, created_at, deleted_at, metadata, "
                   "language_info, instance_id, container_id, env) VALUES "
                   "(?, 'python', 10.0, ?, '{}', '{}', ?, 'c1', ?)",
                   (sandbox_id, deleted_at, sandbox_id, f'{{"OPENAI_API_KEY": "{SECRET}"}}'))
    db.commit()
    db.close()


@pytest.mark.anyio
async def test_the_migration_seals_live_env_drops_deleted_env_and_scrubs_the_file(
        tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    version_3_store(path)
    assert SECRET.encode() in store_bytes(path)  # the old file did hold it
    store = HistoryStore(path)
    await store.open()
    try:
        live = await store.live_sandboxes()
        assert SECRET.encode() not in store_bytes(path)
    finally:
        await store.close()
    assert [r.env for r in live] == [{"OPENAI_API_KEY": SECRET}]
    assert SECRET.encode() not in store_bytes(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert all(env.startswith("aesgcm1:") for (env,) in db.execute("SELECT env FROM sandboxes"))
    db.close()
    sealer = EnvSealer.from_key_file(key_path_for(path))
    db = sqlite3.connect(path)
    (gone_env,) = db.execute("SELECT env FROM sandboxes WHERE id = ?", (GONE,)).fetchone()
    db.close()
    assert sealer.open(gone_env, GONE) == {}  # a deleted sandbox is never re-adopted


V3_SCHEMA = """
CREATE TABLE sandboxes (id TEXT PRIMARY KEY, template TEXT NOT NULL, created_at REAL NOT NULL,
    deleted_at REAL, metadata TEXT NOT NULL, language_info TEXT NOT NULL, instance_id TEXT,
    container_id TEXT, tenant TEXT NOT NULL DEFAULT 'default', expires_at REAL,
    env TEXT NOT NULL DEFAULT '{}', deleted_reason TEXT);
CREATE TABLE cells (sandbox_id TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
    position INTEGER NOT NULL, code TEXT NOT NULL, execution_count INTEGER, status TEXT,
    started_at REAL NOT NULL, finished_at REAL NOT NULL, outputs TEXT NOT NULL,
    notes TEXT NOT NULL, PRIMARY KEY (sandbox_id, position));
CREATE TABLE jupyter_sessions (id TEXT PRIMARY KEY,
    sandbox_id TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE, tenant TEXT NOT NULL,
    path TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL);
PRAGMA user_version = 3;
"""

assert os.sep == "/"  # key_path_for and the symlink test assume POSIX paths
