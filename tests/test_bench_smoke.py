"""The benchmark suite in smoke mode (tiny sizes, targets not judged), so that it cannot rot.

Runs `python -m bench --smoke --results DIR` as a process of its own (the suite forks its
service processes from a forkserver; keeping that out of pytest's process keeps its warnings
and signals out of ours) and checks that every benchmark wrote a complete result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import BENCHMARKS

REPO_ROOT = Path(__file__).resolve().parent.parent
# Every benchmark in turn; `migration` alone starts a fleet with client signaling (~40 s),
# `scaleout` two GCs on a fresh PostgreSQL database and two MC-simulating processes (~30 s,
# up to 60 s on a loaded machine), `participants` a fleet with client signaling (~20 s).
SMOKE_TIMEOUT_S = 300.0

pytestmark = pytest.mark.slow


@pytest.mark.timeout(SMOKE_TIMEOUT_S + 20)
def test_every_benchmark_runs_in_smoke_mode(tmp_path: Path) -> None:
    results = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MC_", "GC_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "--smoke", "--results", str(results)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output, _ = proc.communicate(timeout=SMOKE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the suite cancels itself and stops its processes on SIGTERM
        try:
            output, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        pytest.fail("smoke run timed out:\n" + output.decode(errors="replace")[-4000:])
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text[-4000:]
    for name in BENCHMARKS:
        document = json.loads((results / f"{name}.json").read_text())
        assert document["name"] == name
        assert document["error"] is None, document["error"]
        assert document["judged"] is False and document["passed"] is None
        assert document["metrics"], f"{name} measured nothing"
        for metric, value in document["metrics"].items():
            assert value is not None, f"{name}: {metric} is not a number"
        assert set(document["ratio"]) <= set(document["baseline"])
        assert name in text  # the table names every benchmark
