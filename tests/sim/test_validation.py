"""The simulator reproduces the benchmarks it can, within the documented tolerances
(darktower.sim.validation): herding, failover, the fault suite's kill, heartbeat load."""

from __future__ import annotations

from pathlib import Path

from darktower.sim.validation import format_checks, run_validation

ROOT = Path(__file__).resolve().parents[2]


def test_the_simulator_matches_the_measured_benchmarks() -> None:
    checks = run_validation(ROOT)

    names = {c.name for c in checks}
    assert {
        "herding max/mean per MC",
        "herding throughput (/s)",
        "failover p50 to re-placement (s)",
        "failover p95 to re-placement (s)",
        "fault suite kill to unhealthy (s)",
        "heartbeat GC CPU at 1000 MCs (cores)",
    } <= names
    assert all(c.measured is not None for c in checks), format_checks(checks)
    assert all(c.ok for c in checks), format_checks(checks)


def test_a_missing_measurement_fails_its_check(tmp_path: Path) -> None:
    # The same scenarios, no measured figures beside them: nothing may pass by default.
    (tmp_path / "scenarios").symlink_to(ROOT / "scenarios")
    (tmp_path / "bench" / "results").mkdir(parents=True)

    checks = run_validation(tmp_path)

    assert checks
    assert not any(c.ok for c in checks)
    assert "missing" in format_checks(checks)
