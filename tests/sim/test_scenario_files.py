"""Scenario files: every shipped one loads; malformed ones are refused with one line naming
the field, and `darktower sim` exits 2 on them without running anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from darktower.sim.scenario import ScenarioError, load_scenario, parse_scenario
from tests.support.cli import invoke

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "scenarios").rglob("*.toml"))


def test_the_shipped_scenarios_are_there() -> None:
    names = {p.stem for p in SCENARIOS}
    for needed in (
        "business-day",
        "zone-loss",
        "gc-restart",
        "gc-restart-no-jitter",
        "redis-failover",
        "town-halls",
        "smoke",
        "herding",
        "failover",
        "heartbeat",
    ):
        assert needed in names


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_shipped_scenario_loads(path: Path) -> None:
    scenario = load_scenario(path)

    assert scenario.name
    assert scenario.mcs >= 1


BAD: list[tuple[str, str]] = [
    ('name = "x"\nbogus = 1\n', "bogus: unknown key"),
    ('name = "x"\n[fleet]\nmcs_per_zone = 3\nmcz = 1\n', "fleet.mcz: unknown key"),
    ('name = "x"\n[fleet]\nmcs_per_zone = -4\n', "fleet.mcs_per_zone: must be at least 1"),
    ('name = "x"\n[fleet]\nmcs_per_zone = 10000000000\n', "fleet.mcs_per_zone: must be at most"),
    ('name = "x"\n[fleet]\nmcs_per_zone = "ten"\n', "fleet.mcs_per_zone: must be an integer"),
    ('name = "x"\n[fleet]\nmcs_per_zone = 2.5\n', "fleet.mcs_per_zone: must be an integer"),
    ('name = "x"\n[fleet]\nmcs_per_zone = true\n', "fleet.mcs_per_zone: must be an integer"),
    ('name = "x"\n[heartbeat]\nfast_s = 0\n', "heartbeat.fast_s: must be positive"),
    ('name = "x"\n[heartbeat]\nfast_s = nan\n', "heartbeat.fast_s: must be a finite number"),
    ('name = "x"\n[heartbeat]\nstaleness_s = inf\n', "heartbeat.staleness_s: must be a finite"),
    ('name = "x"\nduration_s = 1e300\n', "duration_s: must be at most"),
    ('name = "x"\nduration_s = 86400\nsample_s = 0.0001\n', "sample_s: at most 100000 samples"),
    ('name = "x"\n[load]\npeak_meetings = 100000000000\n', "load.peak_meetings: must be at most"),
    ('name = "x"\n[load]\nsizes = [2, -1]\nsize_weights = [1, 1]\n', "load.sizes[1]"),
    ('name = "x"\n[load]\nsizes = [2, 3]\nsize_weights = [1]\n', "load.size_weights"),
    ('name = "x"\n[load]\nsizes = "2, 3"\n', "load.sizes: must be a list"),
    ('name = "x"\n[load]\ncurve = [[0, 0.5], [12, 2.0], [24, 0.5]]\n', "load.curve[1]"),
    ('name = "x"\n[load]\ncurve = [[0, 0.5], [12]]\n', "load.curve[1]: must have 2 entries"),
    ('name = "x"\n[load]\ncurve = [[5, 0.5], [24, 0.5]]\n', "load.curve: hours must rise"),
    ('name = "x"\nfleet = 3\n', "fleet: must be a table"),
    ("name = 5\n", "name: must be a string"),
    ("seed = 1\n", "name: required"),
    ('name = "x"\nfailures = 3\n', "failures: must be an array of tables"),
    ('name = "x"\n[[failures]]\nkind = "meteor"\n', "failures[0].kind: must be one of"),
    ('name = "x"\n[[failures]]\nat_s = 5\n', "failures[0].kind: required"),
    ('name = "x"\n[[failures]]\nkind = "zone_loss"\nzone = 7\n', "failures[0].zone"),
    ('name = "x"\n[[failures]]\nkind = "mc_kill"\nmc = 99\n', "failures[0].mc: the fleet has"),
    ('name = "x"\n[[failures]]\nkind = "zone_loss"\nwhen = 1\n', "failures[0].when: unknown"),
    ('name = "x"\n[fleet]\nzones = 64\nmcs_per_zone = 1000000\n', "at most 1000000 MCs"),
    ('name = "x"\n[fleet]\nredis_shards = 0\n', "fleet.redis_shards: must be at least 1"),
    ('name = "x"\n[costs]\njoin_new_s = -1\n', "costs.join_new_s: must be at least 0"),
    ('name = "x"\n[fleet\n', "not valid TOML"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m for _, m in BAD])
def test_a_malformed_scenario_is_refused_naming_the_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)

    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


# One of each kind through the command itself (each invocation builds the whole CLI).
@pytest.mark.parametrize(("text", "message"), [BAD[0], BAD[2], BAD[4], BAD[-1]])
def test_sim_exits_2_with_one_line_on_a_malformed_scenario(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)

    result = invoke("sim", str(path), "--out", str(tmp_path / "out"))

    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert lines[0].startswith(f"darktower sim: {path}: ")
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_not_text_or_too_big_is_refused(tmp_path: Path) -> None:
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00name")
    huge = tmp_path / "huge.toml"
    huge.write_text('name = "x"\n' + "# padding\n" * 200_000)

    with pytest.raises(ScenarioError, match="not UTF-8"):
        load_scenario(binary)
    with pytest.raises(ScenarioError, match="larger than"):
        load_scenario(huge)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")


def test_a_huge_list_is_refused_before_it_is_walked() -> None:
    with pytest.raises(ScenarioError, match=r"load.sizes: must have at most 10000"):
        parse_scenario({"name": "x", "load": {"sizes": [2] * 10_001}})


def test_sim_without_scenarios_says_what_it_needs() -> None:
    result = invoke("sim")

    assert result.exit_code == 2
    assert "give one or more scenario files" in result.stderr
