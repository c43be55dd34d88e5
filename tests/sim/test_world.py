"""The simulator's model on small scenarios: it uses the services' own decision functions,
is deterministic per seed, and each failure does what the scenario says."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from pathlib import Path

import pytest

import darktower.sim.world as world_package
from darktower.common import backoff
from darktower.gc import placement
from darktower.mc import admission, health
from darktower.sim.costs import load_costs
from darktower.sim.runner import run_scenario
from darktower.sim.scenario import Scenario, load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[2]


def small(**tables: object) -> Scenario:
    base: dict[str, object] = {
        "name": "t",
        "duration_s": 900.0,
        "sample_s": 30.0,
        "fleet": {"zones": 3, "mcs_per_zone": 3, "mhs_per_zone": 2, "gc_processes": 2},
        "load": {"peak_meetings": 300, "start_hour": 10.0, "retry_s": 2.0},
    }
    base.update(tables)
    return parse_scenario(base)


@pytest.mark.parametrize(
    ("name", "service_function"),
    [
        ("rank_mcs", placement.rank_mcs),
        ("why_none", placement.why_none),
        ("load_ratio", placement.load_ratio),
        ("choose_mhs", placement.choose_mhs),
        ("decide_reuse", placement.decide_reuse),
        ("decide_admission", admission.decide_admission),
        ("derive_health", health.derive_health),
        ("RegistrationBackoff", backoff.RegistrationBackoff),
        ("backoff_bounds", backoff.backoff_bounds),
    ],
)
def test_the_decisions_are_the_services_own_functions_not_copies(
    name: str, service_function: object
) -> None:
    # Every module of the model that names the decision holds the service's own object.
    modules = [
        importlib.import_module(f"{world_package.__name__}.{info.name}")
        for info in pkgutil.iter_modules(world_package.__path__)
    ]
    holders = [vars(module)[name] for module in modules if name in vars(module)]
    assert holders
    assert all(held is service_function for held in holders)


def test_a_run_is_deterministic_per_seed() -> None:
    scenario = small()

    first = run_scenario(scenario, base=ROOT).summary
    again = run_scenario(scenario, base=ROOT).summary
    other = run_scenario(dataclasses.replace(scenario, seed=2), base=ROOT).summary

    for s in (first, again, other):
        s.pop("wall_s")
    assert first == again
    assert first != other


def test_a_quiet_hour_places_every_meeting_evenly_and_fast() -> None:
    summary = run_scenario(small(), base=ROOT).summary

    assert summary["meetings"]["placed"] > 50
    assert summary["joins"]["failed_joins"] == 0
    assert summary["joins"]["answered"] == summary["meetings"]["placed"]
    assert summary["herding"]["max_over_mean_at_peak"] < 1.3
    # client → GC and back (2 x 20 ms) + a new join's cost + the MC call, from the bench JSON
    costs = load_costs(small().costs, base=ROOT)
    floor_ms = 40 + 1000 * (costs.join_new_s + costs.mc_assign_s)
    assert floor_ms < summary["joins"]["p50_ms"] < floor_ms + 50
    assert summary["failures"] == {}
    steady = summary["before_failures"]
    assert steady["until_s"] == 900.0
    assert steady["join_p99_ms"] >= steady["join_p50_ms"] > 0
    assert 0 < steady["gc_utilisation_max"] < 1
    assert steady["pg_statements_per_s_max"] > 0
    assert steady["redis_ops_per_s_busiest_shard_max"] > 0


def test_a_lost_zone_s_meetings_are_re_placed_after_the_staleness_threshold() -> None:
    scenario = small(
        failures=[{"kind": "zone_loss", "zone": 0, "at_s": 450.0}],
        heartbeat={"staleness_s": 30.0},
    )

    outcome = run_scenario(scenario, base=ROOT)
    s = outcome.summary
    lost = s["failures"]["re_placement"]

    assert lost["meetings_lost"] > 10
    assert lost["re_placed"] + outcome.world.counts["gave_up"] <= lost["meetings_lost"]
    assert lost["not_re_placed_at_end"] == 0
    # Not before the GC may call the lost MCs stale, and not much after.
    assert 30 - 10 - 1 < lost["p50_s"] < 30 + 30
    assert lost["failed_joins_meanwhile"] > 0
    assert {"stale", "unhealthy"} & set(s["joins"]["moves"])
    assert all(mc.hosted == 0 for mc in outcome.world.mcs if mc.zone == 0)
    assert s["failures"]["marked_unhealthy"]["count"] == 3
    assert s["before_failures"]["until_s"] == 450.0


def test_without_jitter_the_registration_storm_comes_in_waves() -> None:
    def restart(jitter: bool) -> dict[str, float]:
        scenario = small(
            duration_s=120.0,
            sample_s=1.0,
            fleet={"zones": 2, "mcs_per_zone": 200, "gc_processes": 1},
            load={"peak_meetings": 0},
            failures=[
                {
                    "kind": "gc_restart",
                    "at_s": 5.0,
                    "down_s": 30.0,
                    "mcs_restart": True,
                    "jitter": jitter,
                }
            ],
        )
        summary = run_scenario(scenario, base=ROOT).summary
        restarted: dict[str, float] = summary["failures"]["gc_restart"]
        restarted["max_queue"] = summary["gc"]["max_queue"]
        return restarted

    smooth, waves = restart(True), restart(False)

    assert smooth["mcs_registered"] == waves["mcs_registered"] == 400
    # Every MC retries at the same instants: the GC's queue takes the whole fleet at once.
    assert waves["max_queue"] > 2 * smooth["max_queue"]
    assert waves["peak_registrations_per_s"] >= smooth["peak_registrations_per_s"]


def test_a_redis_shard_failover_refuses_only_its_own_meetings_meanwhile() -> None:
    scenario = small(
        fleet={"zones": 3, "mcs_per_zone": 3, "gc_processes": 2, "redis_shards": 3},
        load={"peak_meetings": 2000, "start_hour": 10.0, "retry_s": 2.0},
        failures=[{"kind": "redis_failover", "shard": 1, "at_s": 450.0, "duration_s": 20.0}],
    )

    outcome = run_scenario(scenario, base=ROOT)
    s = outcome.summary

    assert s["failures"]["redis_failover"]["offers_refused_redis_unavailable"] > 0
    assert s["failures"]["redis_failover"]["fenced_touches_failed"] > 0
    assert s["joins"]["failed_joins"] > 0
    assert s["joins"]["gave_up"] == 0
    assert all(m.shard == 1 for m in outcome.world.meetings.values() if m.mc < 0)


def test_town_halls_load_participants_not_meetings() -> None:
    summary = run_scenario(
        small(
            load={
                "peak_meetings": 300,
                "start_hour": 10.0,
                "sizes": [5, 1000],
                "size_weights": [95.0, 5.0],
            }
        ),
        base=ROOT,
    ).summary

    assert summary["herding"]["max_participants_per_mc"] >= 1000
    assert summary["meetings"]["peak_participants"] > 300 * 5


def test_a_burst_is_spread_by_the_anti_herding_rule() -> None:
    summary = run_scenario(load_scenario(ROOT / "scenarios/validation/herding.toml"), base=ROOT)
    burst = summary.summary["burst"]

    assert burst["answered"] == 1000
    assert sum(burst["per_mc"].values()) == 1000
    assert burst["max_over_mean"] <= 1.2


@pytest.mark.parametrize("kind", ["mc_crashes", "mc_kill"])
def test_crashed_mcs_lose_their_meetings_and_they_come_back(kind: str) -> None:
    failure: dict[str, object] = {"kind": kind, "at_s": 300.0}
    if kind == "mc_crashes":
        failure |= {"per_mc_per_day": 100.0, "restart_s": 20.0}
    summary = run_scenario(small(failures=[failure]), base=ROOT).summary
    lost = summary["failures"]["re_placement"]

    assert lost["meetings_lost"] > 0
    assert lost["not_re_placed_at_end"] == 0


def test_with_evidence_a_lost_zone_s_meetings_move_without_waiting_for_staleness() -> None:
    def lost(evidence: bool) -> dict[str, float]:
        scenario = small(
            load={"peak_meetings": 300, "start_hour": 10.0, "retry_s": 2.0, "evidence": evidence},
            failures=[{"kind": "zone_loss", "zone": 0, "at_s": 450.0}],
        )
        outcome = run_scenario(scenario, base=ROOT)
        replaced: dict[str, float] = outcome.summary["failures"]["re_placement"]
        replaced["marks"] = outcome.world.counts["evidence_marks"]
        replaced["checks"] = outcome.world.counts["evidence_checks"]
        return replaced

    silence, evidence = lost(False), lost(True)

    assert silence["marks"] == silence["checks"] == 0
    assert evidence["marks"] == 3  # the lost zone's MCs, each marked once
    assert evidence["checks"] <= 3 * (30 / 2 + 1)  # one check per MC per 2 s at most
    assert evidence["not_re_placed_at_end"] == 0
    assert evidence["p50_s"] < 10 < silence["p50_s"]
