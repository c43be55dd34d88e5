"""Run one scenario: costs, world, summary, and the files a run leaves behind."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from darktower.sim.costs import load_costs
from darktower.sim.scenario import Scenario
from darktower.sim.summary import summarize
from darktower.sim.world import World

__all__ = ["RunOutcome", "run_scenario", "write_outputs"]


@dataclass(frozen=True)
class RunOutcome:
    """A finished run: the world (its recorder and counters) and the summary."""

    world: World
    summary: dict[str, Any]


def run_scenario(scenario: Scenario, *, base: Path | None = None) -> RunOutcome:
    """Simulate `scenario`; bench results are looked up relative to `base` (default: cwd)."""
    costs = load_costs(scenario.costs, base=base)
    world = World(scenario, costs)
    started = time.perf_counter()
    world.run()
    return RunOutcome(world, summarize(world, time.perf_counter() - started))


def write_outputs(outcome: RunOutcome, out_dir: Path, *, plots: bool = True) -> list[Path]:
    """`summary.json`, `series.json` and (with matplotlib) the PNG plots into `out_dir`; the
    paths written. Without matplotlib the plots are skipped and `summary["plots"]` says so."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    rec = outcome.world.rec
    series = {
        "sample_s": rec.sample_s,
        "t_s": [round(i * rec.sample_s, 6) for i in range(rec.samples)],
        **{name: [round(v, 4) for v in row] for name, row in sorted(rec.series.items())},
    }
    if plots:
        from darktower.sim.plots import PlotsUnavailable, write_plots

        try:
            written += write_plots(outcome.world, out_dir)
            outcome.summary["plots"] = [p.name for p in written]
        except PlotsUnavailable as exc:
            outcome.summary["plots"] = str(exc)
    path = out_dir / "series.json"
    path.write_text(json.dumps(series) + "\n")
    written.append(path)
    path = out_dir / "summary.json"
    path.write_text(json.dumps(outcome.summary, indent=2) + "\n")
    written.append(path)
    return written
