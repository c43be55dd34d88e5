"""The fleet simulator: a region of GCs, MCs, MHs and Redis shards in simulated time.

`darktower sim scenarios/zone-loss.toml` (or `python -m darktower.sim`) runs a scenario file
(`scenario`) through a discrete-event model (`engine`, `world`, `gc_pool`) whose decisions are
made by the services' own pure functions — MC ranking with anti-herding, MH choice by zone,
reuse or move, MC admission, registration backoff with jitter, staleness — and whose costs per
operation come from the benchmark suite's results (`costs`). It writes a JSON summary
(`summary`), the time series and PNG plots (`plots`, needs the `sim` extra). `validation`
replays the benchmarks the simulator can reproduce and compares. docs/capacity.md is the
capacity-planning guide built from it.

Layout: `scenario` (the TOML format, checked field by field) · `costs` (the cost model) ·
`engine` (event heap) · `gc_pool` (the GC tier as a queue) · `entities` (MCs, MHs, meetings) ·
`world` (the model, a package with one concept a module) · `record` (time series) · `summary` ·
`plots` · `runner` (one run, its files) · `validation` · `cli`.
"""

from __future__ import annotations

from darktower.sim.runner import RunOutcome, run_scenario, write_outputs
from darktower.sim.scenario import Scenario, ScenarioError, load_scenario, parse_scenario

__all__ = [
    "RunOutcome",
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "parse_scenario",
    "run_scenario",
    "write_outputs",
]
