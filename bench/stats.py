"""Timing helpers and the markdown table every benchmark prints."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

MIB = 1024 * 1024


@dataclasses.dataclass
class Sample:
    """Measurements of one scenario on one system: seconds per run by default, or another
    ``unit`` ("MiB" for memory). ``work`` (per run, in ``work_unit``) adds a rate column:
    median of work / seconds, e.g. MB/s or claims/s."""

    scenario: str
    system: str
    seconds: list[float]
    unit: str = "s"
    work: list[float] | None = None
    work_unit: str = ""

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * self._scale

    @property
    def p95_ms(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * self._scale

    @property
    def rate(self) -> float | None:
        if self.work is None:
            return None
        return statistics.median(w / s for w, s in zip(self.work, self.seconds, strict=True))

    @property
    def _scale(self) -> float:
        return 1000 if self.unit == "s" else 1

    @property
    def shown_unit(self) -> str:
        return "ms" if self.unit == "s" else self.unit

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"scenario": self.scenario, "system": self.system,
                                  "n": len(self.seconds), "unit": self.shown_unit,
                                  "median": round(self.median_ms, 3),
                                  "p95": round(self.p95_ms, 3)}
        if self.rate is not None:
            out["rate"], out["rate_unit"] = round(self.rate, 3), self.work_unit
        return out


def timed(fn: Callable[[], object], runs: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def table(samples: list[Sample], baselines: dict[str, str]) -> str:
    """Markdown: one row per sample, with its ratio to the scenario's baseline system."""
    rows = ["| scenario | system | median | p95 | N | rate | vs baseline |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for s in sorted(samples, key=lambda s: s.scenario):
        base = next((b for b in samples if b.scenario == s.scenario
                     and b.system == baselines.get(s.scenario)), None)
        ratio = f"{s.median_ms / base.median_ms:.2f}x" if base and base is not s else (
            "baseline" if base else "")
        rate = f"{s.rate:.1f} {s.work_unit}" if s.rate is not None else ""
        rows.append(f"| {s.scenario} | {s.system} | {s.median_ms:.2f} {s.shown_unit} | "
                    f"{s.p95_ms:.2f} {s.shown_unit} | {len(s.seconds)} | {rate} | {ratio} |")
    return "\n".join(rows)


@dataclasses.dataclass(frozen=True)
class Target:
    """A claim the table must back: ``system`` is at least ``factor`` times faster (median)
    than ``baseline`` in ``scenario``, and optionally under ``under_ms``."""

    scenario: str
    system: str
    baseline: str
    factor: float
    under_ms: float | None = None

    def judge(self, samples: list[Sample]) -> str:
        mine, base = self._find(samples, self.system), self._find(samples, self.baseline)
        if mine is None or base is None:
            return f"| {self.describe()} | not measured | - |"
        speedup = base.median_ms / mine.median_ms
        ok = speedup >= self.factor and (self.under_ms is None or mine.median_ms < self.under_ms)
        ratio = f"{speedup:.1f}x faster" if self.factor >= 1 else f"{1 / speedup:.2f}x the time"
        return (f"| {self.describe()} | {ratio}, {mine.median_ms:.1f} ms | "
                f"{'pass' if ok else 'FAIL'} |")

    def describe(self) -> str:
        speed = (f"{self.factor:g}x faster than" if self.factor >= 1
                 else f"at most {1 / self.factor:g}x the time of")
        limit = f", under {self.under_ms:g} ms p50" if self.under_ms else ""
        return f"{self.scenario}: {self.system} {speed} {self.baseline}{limit}"

    def _find(self, samples: list[Sample], system: str) -> Sample | None:
        return next((s for s in samples if s.scenario == self.scenario and s.system == system),
                    None)


def targets_table(targets: list[Target], samples: list[Sample]) -> str:
    rows = ["| target | measured | result |", "|---|---|---|"]
    return "\n".join(rows + [t.judge(samples) for t in targets])


# scenario names shared by the modules that measure them and the tables that compare them
READY = "time to a ready kernel"
FIRST = "new kernel to first 1+1 result"
ROUND_TRIP = "1+1 round trip"
STREAM = "10 MB stdout stream"
