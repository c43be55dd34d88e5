"""What a run records: per-sample time series and the raw figures its summary is made of."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Recorder", "percentile"]


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The `pct` percentile (nearest rank) of `values`; None if there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Recorder:
    """Sums per sample interval (`add`), values set at the end of one (`put`), and latencies."""

    sample_s: float
    samples: int
    series: dict[str, list[float]] = field(default_factory=dict)
    latencies: list[list[float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.latencies = [[] for _ in range(self.samples)]

    def index(self, t: float) -> int:
        return min(self.samples - 1, max(0, int(t / self.sample_s)))

    def _row(self, name: str) -> list[float]:
        row = self.series.get(name)
        if row is None:
            row = self.series[name] = [0.0] * self.samples
        return row

    def add(self, name: str, t: float, value: float = 1.0) -> None:
        """Add `value` to `name` in the sample interval holding time `t`."""
        self._row(name)[self.index(t)] += value

    def put(self, name: str, i: int, value: float) -> None:
        """Set `name` for sample interval `i`."""
        self._row(name)[i] = value

    def latency(self, t: float, seconds: float) -> None:
        """A join answered at `t` after `seconds`."""
        self.latencies[self.index(t)].append(seconds)

    def row(self, name: str) -> list[float]:
        """The series `name` (zeros if nothing was recorded)."""
        return self._row(name)

    def rate(self, name: str) -> list[float]:
        """The series `name` per second."""
        return [v / self.sample_s for v in self._row(name)]
