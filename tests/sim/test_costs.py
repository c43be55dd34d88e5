"""The cost model reads bench/results when it can and falls back to its documented defaults
when a file or a metric is missing, malformed or absurd."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from darktower.sim.costs import CostModel, load_costs
from darktower.sim.scenario import Costs

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_results_feed_the_model() -> None:
    model = load_costs(Costs(), base=ROOT)

    assert model.sources["join_new_s"] == "join.json distinct c16 throughput"
    assert model.sources["heartbeat_s"] == "heartbeat.json GC CPU, 250 and 500 MCs"
    assert 0.001 < model.join_new_s < 1
    assert 0 < model.heartbeat_s < 0.01
    assert model.redis_shard_ops_s > 1000


def test_without_results_the_defaults_apply(tmp_path: Path) -> None:
    model = load_costs(Costs(results_dir=str(tmp_path)))

    assert set(model.sources.values()) == {"default"}
    assert model.join_new_s == CostModel().join_new_s


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[1, 2]",
        json.dumps({"metrics": "x"}),
        json.dumps({"metrics": {"distinct c16 throughput": -5}}),
        json.dumps({"metrics": {"distinct c16 throughput": "fast"}}),
        json.dumps({"metrics": {"distinct c16 throughput": True}}),
        '{"metrics": {"distinct c16 throughput": NaN}}',
        '{"metrics": {"distinct c16 throughput": Infinity}}',
    ],
)
def test_a_malformed_result_file_is_ignored(tmp_path: Path, content: str) -> None:
    (tmp_path / "join.json").write_text(content)

    model = load_costs(Costs(results_dir=str(tmp_path)))

    assert model.sources["join_new_s"] == "default"
    assert model.join_new_s == CostModel().join_new_s


def test_an_oversized_result_file_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "join.json").write_text(
        json.dumps({"metrics": {"distinct c16 throughput": 50.0}, "pad": "x" * 6_000_000})
    )

    assert load_costs(Costs(results_dir=str(tmp_path))).sources["join_new_s"] == "default"


def test_the_scenario_s_own_figures_win(tmp_path: Path) -> None:
    model = load_costs(Costs(results_dir=str(ROOT / "bench/results"), join_new_s=0.002))

    assert model.join_new_s == 0.002
    assert model.sources["join_new_s"] == "scenario"
