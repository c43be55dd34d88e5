"""`darktower sim` writes a JSON summary, the series and PNG plots per scenario; without
matplotlib it still writes the JSON and says how to get the plots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import invoke

TINY = """
name = "tiny"
duration_s = 600
sample_s = 30
[fleet]
zones = 2
mcs_per_zone = 2
[load]
peak_meetings = 40
start_hour = 10.0
[[failures]]
kind = "mc_kill"
mc = 0
at_s = 200
"""


def tiny(tmp_path: Path) -> str:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return str(path)


def test_sim_writes_the_summary_and_the_series(tmp_path: Path) -> None:
    # The plots are drawn by the README's example (tests/sim/test_readme_sim.py).
    result = invoke("sim", tiny(tmp_path), "--out", str(tmp_path), "--no-plots")

    assert result.exit_code == 0, result.output
    out = tmp_path / "tiny"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenario"] == "tiny"
    assert summary["fleet"]["mcs"] == 4
    assert summary["failures"]["re_placement"]["meetings_lost"] > 0
    assert "plots" not in summary
    assert not list(out.glob("*.png"))
    series = json.loads((out / "series.json").read_text())
    assert len(series["t_s"]) == len(series["meetings"]) == 20
    assert "tiny: " in result.stdout
    assert "summary.json" in result.stdout


@pytest.mark.timeout(180)
def test_without_matplotlib_the_summary_is_written_and_the_hint_printed(tmp_path: Path) -> None:
    # A Python without matplotlib: its import is blocked, as on a core install.
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from darktower.sim.__main__ import main\n"
        f"sys.argv = ['darktower-sim', {tiny(tmp_path)!r},"
        f" '--out', {str(tmp_path)!r}]\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )

    assert done.returncode == 0, done.stderr
    assert "pip install 'darktower[sim]'" in done.stdout
    summary = json.loads((tmp_path / "tiny" / "summary.json").read_text())
    assert "pip install 'darktower[sim]'" in summary["plots"]
    assert not list((tmp_path / "tiny").glob("*.png"))
