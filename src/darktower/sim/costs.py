"""The simulator's cost model: what one operation costs a service, from the benchmark suite.

Each figure is read from `bench/results/*.json` (the committed results of `python -m bench`)
when the file and the metric are there, and otherwise falls back to the default written next
to it, which is the value of the committed run (commit 1cd4efd, this project's 2-core machine):

* GC, new join (claim, read registry, call the MC, activate): ``1 / "distinct c16
  throughput"`` of join.json — the saturated GC's time per placement, 30.1 ms;
* GC, re-join of a placed meeting: ``1 / "rejoin c16 throughput"``, 11.5 ms;
* GC, one heartbeat: the slope of "GC CPU" over beats/s between the 250- and 500-MC windows
  of heartbeat.json (0.41 ms), and the intercept as the GC process's idle cores (0.29) — the
  1000-MC window is left out so that the validation can predict it;
* GC, one RegisterMC: "register 1000 MCs" / 1000 (8.5 ms);
* MC, one AssignMeetingWithMh: "c1 p50" of assign.json (3.2 ms);
* Redis, one shard's fenced operations per second: "pipelined writes/s" of fenced.json
  (11,013/s — client-bound on this machine; a dedicated Redis core does several times more).

Statement counts per operation are from the README's account of the GC's store (a new join is
3 transactions, a re-join one read of 2 statements, heartbeats written behind in one
transaction per 150 ms per GC process) and are documented estimates, not measurements.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from darktower.sim.scenario import Costs

__all__ = ["CostModel", "load_costs"]

MAX_RESULT_BYTES = 5_000_000


@dataclass(frozen=True, slots=True)
class CostModel:
    """Seconds of one service process per operation, and where each figure came from."""

    join_new_s: float = 1 / 33.208261
    join_reuse_s: float = 1 / 86.755077
    heartbeat_s: float = 0.102258 / 250
    gc_idle_cores: float = 0.392761 - 250 * (0.102258 / 250)
    register_s: float = 8.542264 / 1000
    mc_assign_s: float = 3.221462 / 1000
    redis_shard_ops_s: float = 11012.704562
    # PostgreSQL statements per operation (estimates; see the module docstring).
    statements_join_new: float = 6.0
    statements_join_reuse: float = 2.0
    statements_register: float = 2.0
    statements_meeting_end: float = 1.0
    statements_per_sweep: float = 5.0
    heartbeat_flush_s: float = 0.15
    # Redis operations per meeting event (fenced scripts): acquire with the MH list; a
    # participant joining or leaving writes the roster; an ended meeting deletes its keys.
    redis_ops_place: float = 1.0
    redis_ops_participant: float = 1.0
    redis_ops_end: float = 1.0
    sources: dict[str, str] = field(default_factory=dict)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        if path.stat().st_size > MAX_RESULT_BYTES:
            return None
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _metric(data: dict[str, Any] | None, name: str) -> float | None:
    if data is None:
        return None
    metrics = data.get("metrics")
    if not isinstance(metrics, dict):
        return None
    value = metrics.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value <= 0:
        return None
    return float(value)


def load_costs(spec: Costs, *, base: Path | None = None) -> CostModel:
    """The cost model: bench results under `spec.results_dir` (relative to `base`, default
    the working directory), then the documented defaults; the scenario's own figures win."""
    results = Path(spec.results_dir)
    if base is not None and not results.is_absolute():
        results = base / results
    join = _read(results / "join.json")
    heartbeat = _read(results / "heartbeat.json")
    assign = _read(results / "assign.json")
    fenced = _read(results / "fenced.json")
    model = CostModel()
    sources: dict[str, str] = {}
    updates: dict[str, float] = {}

    def take(name: str, value: float | None, source: str) -> None:
        if value is not None:
            updates[name] = value
            sources[name] = source
        else:
            sources[name] = "default"

    distinct = _metric(join, "distinct c16 throughput")
    take("join_new_s", 1 / distinct if distinct else None, "join.json distinct c16 throughput")
    rejoin = _metric(join, "rejoin c16 throughput")
    take("join_reuse_s", 1 / rejoin if rejoin else None, "join.json rejoin c16 throughput")
    cpu_250 = _metric(heartbeat, "250 MCs GC CPU")
    cpu_500 = _metric(heartbeat, "500 MCs GC CPU")
    if cpu_250 is not None and cpu_500 is not None and cpu_500 > cpu_250:
        slope = (cpu_500 - cpu_250) / 250
        take("heartbeat_s", slope, "heartbeat.json GC CPU, 250 and 500 MCs")
        take("gc_idle_cores", max(0.0, cpu_250 - 250 * slope), "heartbeat.json intercept")
    else:
        take("heartbeat_s", None, "")
        take("gc_idle_cores", None, "")
    reg = _metric(heartbeat, "register 1000 MCs")
    take("register_s", reg / 1000 if reg else None, "heartbeat.json register 1000 MCs")
    p50 = _metric(assign, "c1 p50")
    take("mc_assign_s", p50 / 1000 if p50 else None, "assign.json c1 p50")
    take("redis_shard_ops_s", _metric(fenced, "pipelined writes/s"), "fenced.json pipelined")
    for name in (
        "join_new_s",
        "join_reuse_s",
        "heartbeat_s",
        "register_s",
        "gc_idle_cores",
        "mc_assign_s",
        "redis_shard_ops_s",
    ):
        own = getattr(spec, name)
        if own is not None:
            updates[name] = float(own)
            sources[name] = "scenario"
    return replace(model, sources=sources, **updates)
