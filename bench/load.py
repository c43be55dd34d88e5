"""The load loop: `run_load` drives a call with N workers, bounded in calls and seconds, and
keeps latencies, failures by kind and the first messages (`LoadRun`); `percentile`."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["MAX_ERROR_SAMPLES", "LoadRun", "error_notes", "percentile", "run_load"]

MAX_ERROR_SAMPLES = 3


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class LoadRun:
    """Latencies (seconds) of the calls that succeeded, the failures, the wall time."""

    concurrency: int
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    wall_s: float = 0.0
    error_kinds: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)  # the first few, for the notes

    @property
    def calls(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.calls / self.wall_s if self.wall_s > 0 else 0.0

    def ms(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000

    def merge(self, other: LoadRun) -> LoadRun:
        kinds = self.error_kinds + other.error_kinds
        return LoadRun(
            self.concurrency,
            self.latencies + other.latencies,
            self.errors + other.errors,
            self.wall_s + other.wall_s,
            kinds,
            (self.error_samples + other.error_samples)[:MAX_ERROR_SAMPLES],
        )


async def run_load(
    call: Callable[[int], Awaitable[object]],
    *,
    concurrency: int,
    max_calls: int,
    max_seconds: float,
) -> LoadRun:
    """`concurrency` workers call `call(i)` for i = 0, 1, ... until `max_calls` calls were
    started or `max_seconds` passed. Bounded in count and time; each call bounds itself too
    (its own deadline). A call that raises counts as an error, not as a latency."""
    run = LoadRun(concurrency)
    issued = 0
    deadline = time.perf_counter() + max_seconds

    async def worker() -> None:
        nonlocal issued
        while issued < max_calls and time.perf_counter() < deadline:
            index = issued
            issued += 1
            started = time.perf_counter()
            try:
                await call(index)
            except Exception as exc:
                run.errors += 1
                run.error_kinds[type(exc).__name__] += 1
                if len(run.error_samples) < MAX_ERROR_SAMPLES:
                    run.error_samples.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            run.latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.wall_s = time.perf_counter() - started
    return run


def error_notes(runs: Iterable[LoadRun]) -> list[str]:
    """A note naming the failed calls by kind, with the first messages; none if none failed."""
    kinds: Counter[str] = Counter()
    samples: list[str] = []
    for run in runs:
        kinds += run.error_kinds
        samples += run.error_samples
    if not kinds:
        return []
    return [f"failed calls by kind: {dict(kinds)}; first: {samples[:MAX_ERROR_SAMPLES]}"]
