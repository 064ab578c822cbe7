"""Timing helpers and the markdown table every benchmark prints."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable


@dataclasses.dataclass
class Sample:
    """Timings (seconds) of one scenario on one system."""

    scenario: str
    system: str
    seconds: list[float]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1000

    @property
    def p95_ms(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000

    def as_dict(self) -> dict[str, object]:
        return {"scenario": self.scenario, "system": self.system, "n": len(self.seconds),
                "median_ms": round(self.median_ms, 3), "p95_ms": round(self.p95_ms, 3)}


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
    rows = ["| scenario | system | median ms | p95 ms | N | vs baseline |",
            "|---|---|---:|---:|---:|---:|"]
    for s in sorted(samples, key=lambda s: s.scenario):
        base = next((b for b in samples if b.scenario == s.scenario
                     and b.system == baselines.get(s.scenario)), None)
        ratio = f"{s.median_ms / base.median_ms:.2f}x" if base and base is not s else "baseline"
        rows.append(f"| {s.scenario} | {s.system} | {s.median_ms:.2f} | {s.p95_ms:.2f} | "
                    f"{len(s.seconds)} | {ratio} |")
    return "\n".join(rows)
