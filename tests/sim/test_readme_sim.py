"""The README's "Capacity planning (simulator)" commands, run as typed in a copy of what they
read (the scenarios, the benchmark results, the fault suite's recovery times)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.readme import bash_blocks_in
from tests.support.services import darktower_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_the_readme_simulator_commands_run_as_typed(tmp_path: Path) -> None:
    (block,) = bash_blocks_in("## Capacity planning (simulator)")
    shutil.copytree(ROOT / "scenarios", tmp_path / "scenarios")
    shutil.copytree(ROOT / "bench" / "results", tmp_path / "bench" / "results")
    recovery = tmp_path / "tests" / "faults" / "results"
    recovery.mkdir(parents=True)
    shutil.copy(ROOT / "tests/faults/results/recovery.json", recovery)

    done = subprocess.run(
        ["bash", "-ec", block],
        env=darktower_env({}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "sim-results/smoke/summary.json").read_text())
    assert summary["scenario"] == "smoke"
    assert summary["plots"] == ["per_mc.png", "joins.png", "load.png", "failures.png"]
    for name in summary["plots"]:
        assert (tmp_path / "sim-results/smoke" / name).read_bytes().startswith(b"\x89PNG")
    assert "7 of 7 checks within tolerance" in done.stdout
