"""The Prometheus rules (deploy/prometheus/): `promtool check rules` accepts them, `promtool test
rules` runs their unit tests (every alert fires on its case and not beside it), a broken rule
is caught, and every alert has a severity, a summary and a runbook page that exists. (That
every metric they use is really exported: tests/e2e/test_observability.py.)"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "darktower-rules.yaml"
RULE_TESTS = PROMETHEUS / "darktower-rules.test.yaml"

ALERTS = {
    "DarktowerMcNotRegistered",
    "DarktowerMcHeartbeatFailures",
    "DarktowerFencedOutSpike",
    "DarktowerRedisErrors",
    "DarktowerAssignmentRefusals",
    "DarktowerGcPlacement503s",
    "DarktowerStalenessSweepMarksMany",
    "DarktowerActorPanics",
    "DarktowerMailboxOverThreshold",
    "DarktowerMailboxCritical",
    "DarktowerTaskCrashed",
    "DarktowerWebhookBacklog",
}


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    # No skip: CI installs Debian's prometheus (scripts/install-tools.sh).
    assert binary is not None, "promtool is not installed: bash scripts/install-tools.sh"
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def test_promtool_checks_the_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_runs_the_rule_unit_tests() -> None:
    done = promtool("test", "rules", RULE_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_would_catch_a_broken_rule_and_a_wrong_expectation(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: sum(rate(x[5m]) >\n"
    )
    assert promtool("check", "rules", str(broken)).returncode != 0
    # The unit tests again, expecting an alert where the rules raise none: a failure.
    tests = yaml.safe_load(RULE_TESTS.read_text())
    tests["rule_files"] = [str(RULES)]
    first = tests["tests"][0]["alert_rule_test"][0]
    assert first["exp_alerts"] == []
    first["exp_alerts"] = [{"exp_labels": {"severity": "critical"}}]
    wrong = tmp_path / "wrong.test.yaml"
    wrong.write_text(yaml.safe_dump(tests))
    done = promtool("test", "rules", str(wrong), cwd=tmp_path)
    assert done.returncode != 0
    assert "FAILED" in done.stdout + done.stderr


def test_every_alert_is_tested_has_a_runbook_and_says_how_bad() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}
    assert set(alerts) == ALERTS
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    }
    assert tested == ALERTS
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"], name
        runbook = rule["annotations"]["runbook_url"]
        assert (ROOT / runbook).is_file(), (name, runbook)
        page = (ROOT / runbook).read_text()
        for part in ("**Meaning.**", "**Impact.**", "**First checks.**", "**Fixes.**"):
            assert part in page, (runbook, part)
