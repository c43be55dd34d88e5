"""Recovery times measured by the fault-injection scenarios, and the table made from them.

Each scenario test gets a `ScenarioRecord` (the `recovery` fixture), says what it injected and
what held, and records each measured time (`measure`) and count (`count`). At the end of the
session the records are printed as a table; with `DARKTOWER_RECORD_RECOVERY=1` they are also
merged into `tests/faults/results/recovery.json` (one entry per scenario, replaced when that
scenario runs again, so running one scenario keeps the others' last results).

`python -m tests.faults.recovery_times` prints the JSON file as the Markdown table the README
carries.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "RECORD_ENV",
    "RESULTS_PATH",
    "RecoveryLog",
    "ScenarioRecord",
    "markdown_table",
    "recording_enabled",
]

RECORD_ENV = "DARKTOWER_RECORD_RECOVERY"
RESULTS_PATH = Path(__file__).parent / "results" / "recovery.json"


def recording_enabled() -> bool:
    return os.environ.get(RECORD_ENV) == "1"


@dataclass
class ScenarioRecord:
    """What one scenario injected, what held, and the times it measured (seconds)."""

    scenario: str
    title: str
    injected: str
    held: str
    recovery: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    outcome: str = "unfinished"  # passed | failed | xfailed | skipped, set by the fixture

    def measure(self, name: str, seconds: float) -> float:
        self.recovery[name] = round(seconds, 3)
        return seconds

    def count(self, name: str, value: int) -> int:
        self.counts[name] = value
        return value


@dataclass
class RecoveryLog:
    """The session's scenario records, in the order they finished."""

    records: list[ScenarioRecord] = field(default_factory=list)

    def add(self, record: ScenarioRecord) -> None:
        self.records.append(record)

    def write(self, path: Path = RESULTS_PATH) -> Path:
        """Merge this session's records into `path` (by scenario)."""
        existing: dict[str, Any] = {}
        if path.exists():
            existing = json.loads(path.read_text())
        scenarios: dict[str, Any] = existing.get("scenarios", {})
        recorded_at = datetime.now(UTC).isoformat(timespec="seconds")
        for record in self.records:
            scenarios[record.scenario] = {**asdict(record), "recorded_at": recorded_at}
        document = {
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(terse=True),
            },
            "scenarios": dict(sorted(scenarios.items(), key=lambda kv: _order(kv[0]))),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2) + "\n")
        return path


def _order(scenario: str) -> tuple[int, str]:
    digits = "".join(ch for ch in scenario if ch.isdigit())
    return (int(digits) if digits else 1_000, scenario)


def _times(recovery: dict[str, float]) -> str:
    return "; ".join(f"{name.replace('_', ' ')} {value:.2f} s" for name, value in recovery.items())


def markdown_table(records: list[dict[str, Any]]) -> str:
    """Scenario | injected | what held | recovery time — one row per record."""
    lines = [
        "| scenario | injected | what held | recovery time |",
        "|---|---|---|---|",
    ]
    for r in sorted(records, key=lambda r: _order(str(r["scenario"]))):
        title = f"{r['scenario']}. {r['title']}"
        if r.get("outcome") not in (None, "passed"):
            title += f" ({r['outcome']})"
        counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in r.get("counts", {}).items())
        held = r["held"] + (f" ({counts})" if counts else "")
        lines.append(f"| {title} | {r['injected']} | {held} | {_times(r['recovery'])} |")
    return "\n".join(lines)


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS_PATH
    document = json.loads(path.read_text())
    print(markdown_table(list(document["scenarios"].values())))


if __name__ == "__main__":
    main()
