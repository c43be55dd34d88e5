"""The simulator against reality: the benchmarks it can reproduce, run both ways, compared.

Each check runs a scenario of `scenarios/validation/` and compares one figure with the
measured one, committed in the repository, within a stated tolerance:

* herding (bench/results/herding.json): max/mean meetings per MC after 1000 joins over 4 MCs,
  within ±0.10 of the measured value and under the benchmark's own 1.2 target; the burst's
  throughput within ±25 % (the GC's cost per placement comes from join.json, a different
  benchmark, so this is a prediction);
* failover (bench/results/failover.json): the p50 and p95 times from the kill to a live MC's
  answer, measured once by the benchmark at one kill phase, must lie within the range the
  simulator gives over 8 kill phases (seeds), widened by 0.25 s; none left unplaced;
* fault suite (tests/faults/results/recovery.json, "MC killed"): kill to UNHEALTHY at the
  fault suite's timings, within the simulated range over 8 seeds, widened by 0.25 s;
* heartbeat (bench/results/heartbeat.json): the GC's CPU at 1000 MCs beating every second,
  within ±15 % — the cost of a beat is fitted on the 250- and 500-MC windows only.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from darktower.sim.runner import run_scenario
from darktower.sim.scenario import Scenario, load_scenario

__all__ = ["Check", "format_checks", "run_validation"]

SEEDS = 8


@dataclass(frozen=True)
class Check:
    """One comparison: what was measured, what the simulator gives, and the verdict."""

    name: str
    measured: float | None
    simulated: str
    tolerance: str
    ok: bool


def _measured(path: Path, pick: Callable[[dict[str, Any]], Any]) -> float | None:
    try:
        value = pick(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return float(value) if isinstance(value, int | float) else None


def _seeds(scenario: Scenario, root: Path) -> list[dict[str, Any]]:
    return [
        run_scenario(dataclasses.replace(scenario, seed=scenario.seed + i), base=root).summary
        for i in range(SEEDS)
    ]


def _in_range(name: str, measured: float | None, sims: list[float], slack: float) -> Check:
    lo, hi = min(sims), max(sims)
    ok = measured is not None and lo - slack <= measured <= hi + slack
    return Check(
        name,
        measured,
        f"{lo:.3f} to {hi:.3f} over {len(sims)} seeds",
        f"inside the range ± {slack} s",
        ok,
    )


def run_validation(root: Path) -> list[Check]:
    """Run every check; `root` is the repository (scenarios/ and the results live there)."""
    scenarios = root / "scenarios" / "validation"
    results = root / "bench" / "results"
    checks: list[Check] = []

    herd = run_scenario(load_scenario(scenarios / "herding.toml"), base=root).summary["burst"]
    measured = _measured(results / "herding.json", lambda d: d["metrics"]["max/mean per MC"])
    sim = herd["max_over_mean"]
    ok = measured is not None and abs(sim - measured) <= 0.10 and sim <= 1.2
    checks.append(Check("herding max/mean per MC", measured, f"{sim:.3f}", "± 0.10, ≤ 1.2", ok))
    measured = _measured(results / "herding.json", lambda d: d["metrics"]["throughput"])
    sim = herd["throughput_per_s"]
    ok = measured is not None and abs(sim - measured) <= 0.25 * measured
    checks.append(Check("herding throughput (/s)", measured, f"{sim:.2f}", "± 25 %", ok))

    runs = _seeds(load_scenario(scenarios / "failover.toml"), root)
    replaced = [r["failures"]["re_placement"] for r in runs]
    for pct in ("p50", "p95"):
        metric = f"{pct} to re-placement"
        measured = _measured(results / "failover.json", lambda d: d["metrics"][metric])  # noqa: B023
        sims = [float(r[f"{pct}_s"]) for r in replaced]
        checks.append(_in_range(f"failover {pct} to re-placement (s)", measured, sims, 0.25))
    left = max(r["not_re_placed_at_end"] for r in replaced)
    measured = _measured(results / "failover.json", lambda d: d["metrics"]["not re-placed"])
    checks.append(Check("failover not re-placed", measured, str(left), "equal", measured == left))

    runs = _seeds(load_scenario(scenarios / "fault-suite-kill.toml"), root)
    sims = [float(r["failures"]["marked_unhealthy"]["first_after_failure_s"]) for r in runs]
    measured = _measured(
        root / "tests" / "faults" / "results" / "recovery.json",
        lambda d: d["scenarios"]["1"]["recovery"]["kill_to_unhealthy"],
    )
    checks.append(_in_range("fault suite kill to unhealthy (s)", measured, sims, 0.25))

    beat = run_scenario(load_scenario(scenarios / "heartbeat.toml"), base=root).summary
    measured = _measured(results / "heartbeat.json", lambda d: d["metrics"]["1000 MCs GC CPU"])
    sim = beat["gc"]["peak_cores"]
    ok = measured is not None and abs(sim - measured) <= 0.15 * measured
    checks.append(
        Check("heartbeat GC CPU at 1000 MCs (cores)", measured, f"{sim:.3f}", "± 15 %", ok)
    )
    return checks


def format_checks(checks: list[Check]) -> str:
    """The checks as a table, one line each, and a last line with the verdict."""
    lines = ["check | measured | simulated | tolerance | ok"]
    for c in checks:
        measured = "missing" if c.measured is None else f"{c.measured:g}"
        lines.append(
            f"{c.name} | {measured} | {c.simulated} | {c.tolerance} | {'yes' if c.ok else 'NO'}"
        )
    passed = sum(c.ok for c in checks)
    lines.append(f"{passed} of {len(checks)} checks within tolerance")
    return "\n".join(lines)
