"""The wire facts stated once (wire.py): ids and timestamps."""

from __future__ import annotations

import datetime
import doctest

from sandcell_gateway import wire


def test_doctests() -> None:
    assert doctest.testmod(wire).failed == 0


def test_ids_have_one_shape_and_nothing_else_passes() -> None:
    ids = {wire.new_sandbox_id() for _ in range(100)}
    assert len(ids) == 100 and all(wire.is_sandbox_id(i) for i in ids)
    for bad in ("sbx_0123", "sbx_0123456789ABCDEF", "sbx_0123456789abcdef\n", "wkr_0123456789abcdef",
                "sbx-0123-4567-89ab-cdef", ""):
        assert not wire.is_sandbox_id(bad), bad
    for other, prefix in ((wire.new_worker_id, "wkr_"), (wire.new_command_id, "cmd_"),
                          (wire.new_invocation_id, "inv_")):
        assert other().startswith(prefix) and len(other()) == 20 and other() != other()


def test_times_read_back_exactly_to_the_microsecond() -> None:
    ts = 1_764_000_000.123456
    text = wire.iso_time(ts)
    assert text == "2025-11-24T16:00:00.123456Z"
    parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert abs(parsed.timestamp() - ts) < 1e-6
