"""A run's JSON summary: the figures an operator reads first, with units in the names."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from darktower.sim.record import percentile
from darktower.sim.world import World

__all__ = ["summarize"]


def _ms(values: list[float], pct: float) -> float | None:
    p = percentile(values, pct)
    return None if p is None else round(p * 1000, 2)


def _s(values: list[float], pct: float) -> float | None:
    p = percentile(values, pct)
    return None if p is None else round(p, 3)


def _herding(world: World) -> dict[str, Any]:
    rec = world.rec
    maxes, means = rec.row("max_mc_meetings"), rec.row("mean_mc_meetings")
    meetings = rec.row("meetings")
    peak = max(range(rec.samples), key=lambda i: meetings[i]) if rec.samples else 0
    ratios = [mx / mn for mx, mn in zip(maxes, means, strict=True) if mn >= 1.0]
    return {
        "max_meetings_per_mc": max(maxes, default=0),
        "max_participants_per_mc": max(rec.row("max_mc_participants"), default=0),
        "max_over_mean_at_peak": round(maxes[peak] / means[peak], 3) if means[peak] else None,
        "worst_max_over_mean": round(max(ratios), 3) if ratios else None,
    }


def _failures(world: World) -> dict[str, Any]:
    out: dict[str, Any] = {}
    times = world.failure_times
    replaced = world.replaced
    lost = world.counts["meetings_lost"]
    if lost:
        still = sum(1 for m in world.meetings.values() if m.lost_at is not None)
        out["re_placement"] = {
            "meetings_lost": lost,
            "re_placed": len(replaced),
            "not_re_placed_at_end": still,
            "p50_s": _s(replaced, 50),
            "p95_s": _s(replaced, 95),
            "all_s": round(max(replaced), 3) if replaced else None,
            "failed_joins_meanwhile": world.counts["failed_joins"],
            "gave_up": world.counts["gave_up"],
        }
    if world.unhealthy_after:
        out["marked_unhealthy"] = {
            "count": len(world.unhealthy_after),
            "after_last_beat_p50_s": _s(world.unhealthy_after, 50),
            "after_last_beat_max_s": round(max(world.unhealthy_after), 3),
        }
        if "zone_loss" in times or "mc_kill" in times:
            at = times.get("zone_loss", times.get("mc_kill", 0.0))
            out["marked_unhealthy"]["first_after_failure_s"] = round(
                times["first_unhealthy"] - at, 3
            )
    if "gc_up" in times:
        up = times["gc_up"]
        after = [t - up for t in world.registered_times if t >= up]
        regs = world.rec.rate("registrations")
        out["gc_restart"] = {
            "gc_up_at_s": round(up, 3),
            "jitter": world.jitter,
            "mcs_registered": len(after),
            "all_registered_after_up_s": round(max(after), 3) if after else None,
            "p50_registered_after_up_s": _s(after, 50),
            "register_attempts": int(sum(world.rec.row("register_attempts"))),
            "peak_registrations_per_s": round(max(regs, default=0.0), 1),
        }
    if "redis_failover" in times:
        out["redis_failover"] = {
            "at_s": round(times["redis_failover"], 3),
            "offers_refused_redis_unavailable": world.refusals["mc_unhealthy_redis"],
            "fenced_touches_failed": world.counts["redis_failed_touches"],
        }
    if world.counts["evidence_checks"]:
        out["evidence"] = {
            "checks": world.counts["evidence_checks"],
            "marked_unhealthy": world.counts["evidence_marks"],
        }
    if world.counts["mc_crashes"]:
        out["mc_crashes"] = world.counts["mc_crashes"]
    return out


def _before_failures(world: World) -> dict[str, Any] | None:
    """The steady state: the sample intervals that end before the first failure (a whole run
    without failures). None if the first failure comes in the first interval."""
    rec = world.rec
    first = min((f.at_s for f in world.s.failures if f.kind != "mc_crashes"), default=None)
    n = rec.samples if first is None else int(first // rec.sample_s)
    if n < 1:
        return None
    shards = world.s.fleet.redis_shards
    lat = [v for b in rec.latencies[:n] for v in b]
    maxes, means = rec.row("max_mc_meetings")[:n], rec.row("mean_mc_meetings")[:n]
    ratios = [mx / mn for mx, mn in zip(maxes, means, strict=True) if mn >= 1.0]
    return {
        "until_s": round(n * rec.sample_s, 3),
        "gc_cores_max": round(max(rec.row("gc_cores")[:n]), 3),
        "gc_utilisation_max": round(max(rec.row("gc_utilisation")[:n]), 3),
        "pg_statements_per_s_max": round(max(rec.rate("pg_statements")[:n]), 1),
        "redis_ops_per_s_busiest_shard_max": round(
            max(max(rec.rate(f"redis_ops_{k}")[:n]) for k in range(shards)), 1
        ),
        "join_p50_ms": _ms(lat, 50),
        "join_p99_ms": _ms(lat, 99),
        "herding_max_over_mean": round(max(ratios), 3) if ratios else None,
        "max_meetings_per_mc": max(maxes),
        "max_participants_per_mc": max(rec.row("max_mc_participants")[:n]),
    }


def summarize(world: World, wall_s: float) -> dict[str, Any]:
    """The summary of a finished run of `world` that took `wall_s` seconds."""
    s, rec, costs = world.s, world.rec, world.costs
    lat = world.latencies
    shards = s.fleet.redis_shards
    shard_peaks = [max(rec.rate(f"redis_ops_{k}"), default=0.0) for k in range(shards)]
    pg = rec.rate("pg_statements")
    cost_figures = {k: v for k, v in asdict(costs).items() if k != "sources"}
    summary: dict[str, Any] = {
        "scenario": s.name,
        "description": s.description,
        "seed": s.seed,
        "simulated_s": s.duration_s,
        "wall_s": round(wall_s, 2),
        "events": world.events.processed,
        "fleet": {
            "zones": s.fleet.zones,
            "mcs": s.mcs,
            "mhs": len(world.mhs),
            "gc_processes": s.fleet.gc_processes,
            "redis_shards": shards,
        },
        "meetings": {
            "placed": int(sum(rec.row("placements"))),
            "prefilled": world.counts["prefilled"],
            "peak_concurrent": int(max(rec.row("meetings"), default=0)),
            "peak_participants": int(max(rec.row("participants"), default=0)),
        },
        "herding": _herding(world),
        "joins": {
            "answered": len(lat),
            "p50_ms": _ms(lat, 50),
            "p95_ms": _ms(lat, 95),
            "p99_ms": _ms(lat, 99),
            "max_ms": round(max(lat) * 1000, 2) if lat else None,
            "failed_joins": world.counts["failed_joins"],
            "gave_up": world.counts["gave_up"],
            "refusals": dict(sorted(world.refusals.items())),
            "moves": dict(sorted(world.moves.items())),
        },
        "gc": {
            "peak_cores": round(max(rec.row("gc_cores"), default=0.0), 3),
            "peak_utilisation": round(max(rec.row("gc_utilisation"), default=0.0), 3),
            "max_queue": world.pool.max_queue,
            "overloaded_samples": world.overloaded_samples,
        },
        "postgres": {
            "peak_statements_per_s": round(max(pg, default=0.0), 1),
            "mean_statements_per_s": round(sum(pg) / len(pg), 1) if pg else 0.0,
        },
        "redis": {
            "peak_ops_per_s_busiest_shard": round(max(shard_peaks, default=0.0), 1),
            "shard_capacity_ops_per_s": round(costs.redis_shard_ops_s, 1),
            "peak_shard_utilisation": round(
                max(shard_peaks, default=0.0) / costs.redis_shard_ops_s, 3
            ),
        },
        "before_failures": _before_failures(world),
        "failures": _failures(world),
        "costs": {"figures": cost_figures, "sources": costs.sources},
    }
    if s.burst.joins:
        counts = sorted(world.burst_placed.values())
        mean = sum(counts) / len(world.mcs) if world.mcs else 0.0
        span = world.burst_span[1] - world.burst_span[0]
        summary["burst"] = {
            "joins": s.burst.joins,
            "answered": len(world.burst_latencies),
            "per_mc": dict(sorted(world.burst_placed.items())),
            "max_over_mean": round(max(counts) / mean, 3) if counts and mean else None,
            "min_over_mean": round((min(counts) if len(counts) == len(world.mcs) else 0) / mean, 3)
            if mean
            else None,
            "throughput_per_s": round(len(world.burst_latencies) / span, 2) if span > 0 else None,
            "p99_ms": _ms(world.burst_latencies, 99),
        }
    return summary
