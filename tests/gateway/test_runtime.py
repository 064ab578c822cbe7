"""The runtime file through which local clients find a gateway."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from sandcell_gateway import runtime


def test_runtime_file_is_private_and_complete(tmp_path: Path) -> None:
    path = runtime.write_runtime_file(tmp_path / "rt", "http://127.0.0.1:1234", "tok", 1234)

    assert path.name == "gateway-1234.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["url"] == "http://127.0.0.1:1234"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no partial file left


def test_a_reader_never_sees_a_half_written_runtime_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Readers glob ``gateway-*.json``; while the content is being written, none may match."""
    seen_while_writing: list[list[str]] = []
    real_dump = json.dump

    def dump_and_look(obj: Any, handle: Any) -> None:
        seen_while_writing.append(sorted(p.name for p in tmp_path.glob("gateway-*.json")))
        real_dump(obj, handle)

    monkeypatch.setattr(runtime.json, "dump", dump_and_look)
    runtime.write_runtime_file(tmp_path, "http://127.0.0.1:1", "tok", 1)

    assert seen_while_writing == [[]]


def test_remove_leaves_a_newer_gateways_file(tmp_path: Path) -> None:
    path = runtime.write_runtime_file(tmp_path, "http://127.0.0.1:1", "tok", 1)
    path.write_text(json.dumps({"pid": os.getpid() + 1}))  # another process took the port

    runtime.remove_runtime_file(path)

    assert path.exists()
