"""The fault table's formatting and row bookkeeping (the attacks themselves are proven by
tests/integration/test_hostile.py and test_restart.py; ``python -m bench.faults`` times them)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from bench.fault_lab import Fault, Observed, Recovery, Row, Watch, measure, table


def row(**overrides: Any) -> Row:
    fields: dict[str, Any] = {"fault": "fork bomb", "outcome": "OSError EAGAIN after 244 forks",
                              "recoveries": [Recovery("same session answers 1+1", 0.021)],
                              "bystander_ms": 17.24, "bystander_n": 22, "bystander_ok": True}
    return Row(**{**fields, **overrides})


def test_a_row_with_one_recovery_is_one_line() -> None:
    lines = table([row()]).splitlines()
    assert lines[2] == ("| fork bomb | OSError EAGAIN after 244 forks | 17.2 ms (n=22) | yes | - "
                        "| same session answers 1+1 | 0.02 s |")
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_the_p99_and_the_peak_rss_have_their_cells() -> None:
    lines = table([row(bystander_p99_ms=234.04, peak_rss_mib=111.2)]).splitlines()
    assert lines[2] == ("| fork bomb | OSError EAGAIN after 244 forks | 17.2 / 234.0 ms (n=22) "
                        "| yes | 111 MiB | same session answers 1+1 | 0.02 s |")


def test_each_further_recovery_gets_its_own_line_under_the_fault() -> None:
    recoveries = [Recovery("gateway serves again", 6.456), Recovery("pool full", 19.1)]
    lines = table([row(recoveries=recoveries, bystander_ms=None, bystander_n=0)]).splitlines()
    assert lines[2].startswith("| fork bomb | OSError EAGAIN after 244 forks | - (n=0) | yes |")
    assert lines[2].endswith("| gateway serves again | 6.46 s |")
    assert lines[3] == "| | | | | | pool full | 19.10 s |"
    assert lines[3].count("|") == lines[0].count("|")


def test_cells_cannot_break_the_table() -> None:
    [_, _, line] = table([row(outcome="a | b\nc", recoveries=[], bystander_ok=False)]).splitlines()
    assert line == "| fork bomb | a \\| b c | 17.2 ms (n=22) | NO | - | - | - |"


class FakeLab:
    """Only what ``measure`` touches: the pool wait, the last watch, the bystander's canary."""

    def __init__(self, canary: bool) -> None:
        self.gw = SimpleNamespace(wait_ready=lambda: None)
        self.watch: Watch | None = None
        self.bystander = SimpleNamespace(alive=lambda: canary)


def test_measure_takes_the_bystanders_median_and_its_failures() -> None:
    lab = FakeLab(canary=True)

    def attack(lab: Any) -> Observed:
        lab.watch = Watch(latencies=[0.010, 0.030, 0.020], failures=["SandboxError: gone"])
        return Observed("contained", [Recovery("answers", 0.5)])

    measured = measure(Fault("x", "attack", attack), lab)  # type: ignore[arg-type]
    assert (measured.bystander_ms, measured.bystander_n) == (20.0, 4)
    assert measured.bystander_ok is False  # one of its 1+1s failed


def test_a_row_that_breaks_is_reported_and_does_not_stop_the_table() -> None:
    def broken(lab: Any) -> Observed:
        raise RuntimeError("no marker")

    measured = measure(Fault("x", "flood", broken), FakeLab(canary=False))  # type: ignore[arg-type]
    assert measured.outcome == "bench error: RuntimeError: no marker"
    assert (measured.bystander_ms, measured.bystander_ok, measured.recoveries) == (None, False, [])
