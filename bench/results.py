"""Results: a benchmark's metrics with baselines and targets (`Metric`, `BenchResult`), the
JSON document each one writes (`write_result`) and the table the runner ends with."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.context import REPO_ROOT

__all__ = ["BenchResult", "Metric", "git_sha", "render_table", "write_result"]


@dataclass
class Metric:
    """One row of the table. `check` judges the metric (with its baseline) against its target;
    `ratio` is value / baseline when there is a baseline."""

    name: str
    value: float
    unit: str = ""
    baseline: float | None = None
    target: str = ""
    check: Callable[[Metric], bool] | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    def ok(self, judge: bool) -> bool | None:
        if not judge or self.check is None:
            return None
        return bool(self.check(self))


@dataclass
class BenchResult:
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profile: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    def add(self, metric: Metric) -> Metric:
        self.metrics.append(metric)
        return metric

    def passed(self, judge: bool) -> bool | None:
        if self.error is not None:
            return False
        verdicts = [m.ok(judge) for m in self.metrics]
        judged = [v for v in verdicts if v is not None]
        return all(judged) if judged else None


def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _number(value: float | None) -> float | None:
    if value is None or value != value:  # NaN is not JSON
        return None
    return round(value, 6)


def write_result(
    result: BenchResult, results_dir: Path, *, judge: bool, context: Mapping[str, Any]
) -> Path:
    """`<results_dir>/<name>.json`: what ran, the figures, their baselines, ratios, targets."""
    results_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "name": result.name,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_sha": git_sha(),
        "context": dict(context),
        "parameters": result.parameters,
        "metrics": {m.name: _number(m.value) for m in result.metrics},
        "units": {m.name: m.unit for m in result.metrics},
        "baseline": {m.name: _number(m.baseline) for m in result.metrics if m.baseline},
        "ratio": {m.name: _number(m.ratio) for m in result.metrics if m.ratio is not None},
        "target": {m.name: m.target for m in result.metrics if m.target},
        "ok": {m.name: m.ok(judge) for m in result.metrics if m.check is not None},
        "passed": result.passed(judge),
        "judged": judge,
        "notes": result.notes,
        "profile": result.profile,
        "error": result.error,
        "seconds": round(result.seconds, 2),
    }
    path = results_dir / f"{result.name}.json"
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    return path


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or value != value:
        return "—"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".rstrip()


def render_table(results: Sequence[BenchResult], *, judge: bool) -> Table:
    table = Table(title="darktower benchmarks" + ("" if judge else " (smoke: targets not judged)"))
    for column in ("benchmark", "metric", "value", "baseline", "ratio", "target", "ok"):
        table.add_column(column, justify="right" if column in ("value", "baseline") else "left")
    for result in results:
        if result.error is not None:
            table.add_row(result.name, "error", result.error[:60], "", "", "", "[red]✗[/red]")
        for i, m in enumerate(result.metrics):
            verdict = m.ok(judge)
            mark = "" if verdict is None else "[green]✓[/green]" if verdict else "[red]✗[/red]"
            ratio = m.ratio
            table.add_row(
                result.name if i == 0 and result.error is None else "",
                m.name,
                _fmt(m.value, m.unit),
                _fmt(m.baseline, m.unit) if m.baseline is not None else "",
                f"{ratio:.2f}x" if ratio is not None else "",
                m.target,
                mark,
            )
        table.add_section()
    return table
