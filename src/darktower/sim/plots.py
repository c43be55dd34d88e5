"""PNG plots of a run (matplotlib, the `sim` extra): imported lazily, so a core install
imports this module and gets `PlotsUnavailable` with the install hint instead of the plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from darktower.sim.record import percentile
from darktower.sim.world import World

__all__ = ["INSTALL_HINT", "PlotsUnavailable", "write_plots"]

INSTALL_HINT = "plots need matplotlib: pip install 'darktower[sim]'"


class PlotsUnavailable(RuntimeError):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotsUnavailable(INSTALL_HINT) from None
    return plt


def _hours(world: World) -> tuple[list[float], str]:
    rec = world.rec
    if world.s.duration_s >= 7200:
        return [(i + 1) * rec.sample_s / 3600 for i in range(rec.samples)], "simulated time (h)"
    return [(i + 1) * rec.sample_s for i in range(rec.samples)], "simulated time (s)"


def _mark_failures(ax: Any, world: World, scale: float) -> None:
    for f in world.s.failures:
        if f.kind != "mc_crashes":
            ax.axvline(f.at_s / scale, color="red", linestyle=":", linewidth=1)


def write_plots(world: World, out_dir: Path) -> list[Path]:
    """Write the run's plots into `out_dir`; the paths. `PlotsUnavailable` without matplotlib."""
    plt = _pyplot()
    rec = world.rec
    x, xlabel = _hours(world)
    scale = 3600.0 if xlabel.endswith("(h)") else 1.0
    name = world.s.name
    written: list[Path] = []

    def save(fig: Any, filename: str) -> None:
        path = out_dir / filename
        # Fixed margins: tight_layout measures every label and costs seconds per figure.
        fig.subplots_adjust(left=0.1, right=0.97, top=0.95, bottom=0.07, hspace=0.35)
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)

    # 1. Meetings and participants per MC: the herding view.
    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    axes[0].plot(x, rec.row("meetings"), label="meetings")
    axes[0].plot(x, rec.row("participants"), label="participants")
    axes[0].set_ylabel("in the region")
    axes[0].legend()
    axes[0].set_title(f"{name}: load and its spread over MCs")
    axes[1].plot(x, rec.row("max_mc_meetings"), label="max per MC")
    axes[1].plot(x, rec.row("mean_mc_meetings"), label="mean per MC")
    axes[1].set_ylabel("meetings per MC")
    axes[1].legend()
    ratio = [
        mx / mn if mn >= 1 else float("nan")
        for mx, mn in zip(rec.row("max_mc_meetings"), rec.row("mean_mc_meetings"), strict=True)
    ]
    axes[2].plot(x, ratio, color="purple")
    axes[2].set_ylabel("max / mean (herding)")
    axes[2].set_xlabel(xlabel)
    for ax in axes:
        _mark_failures(ax, world, scale)
    save(fig, "per_mc.png")

    # 2. Join latency percentiles (queueing included) and failed joins.
    fig, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for pct in (50, 95, 99):
        values = [percentile(b, pct) for b in rec.latencies]
        axes[0].plot(
            x, [v * 1000 if v is not None else float("nan") for v in values], label=f"p{pct}"
        )
    axes[0].set_yscale("log")
    axes[0].set_ylabel("join latency (ms)")
    axes[0].legend()
    axes[0].set_title(f"{name}: joins at the GC")
    axes[1].plot(x, rec.rate("failed_joins"), color="red", label="failed joins/s")
    axes[1].plot(x, rec.rate("replaced"), color="green", label="meetings re-placed/s")
    axes[1].set_ylabel("per second")
    axes[1].set_xlabel(xlabel)
    axes[1].legend()
    for ax in axes:
        _mark_failures(ax, world, scale)
    save(fig, "joins.png")

    # 3. GC, PostgreSQL and Redis load.
    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    axes[0].plot(x, rec.row("gc_cores"), label="GC cores used")
    axes[0].axhline(world.pool.processes, color="grey", linestyle="--", label="GC processes")
    axes[0].set_ylabel("cores")
    axes[0].legend()
    axes[0].set_title(f"{name}: load on the shared services")
    axes[1].plot(x, rec.rate("pg_statements"))
    axes[1].set_ylabel("PostgreSQL statements/s")
    shards = world.s.fleet.redis_shards
    for k in range(min(shards, 16)):
        axes[2].plot(x, rec.rate(f"redis_ops_{k}"), linewidth=0.8)
    axes[2].axhline(world.costs.redis_shard_ops_s, color="grey", linestyle="--")
    axes[2].set_ylabel(f"Redis ops/s per shard ({min(shards, 16)} of {shards})")
    axes[2].set_xlabel(xlabel)
    for ax in axes:
        _mark_failures(ax, world, scale)
    save(fig, "load.png")

    # 4. Failures: MCs placeable, registrations, re-placement times.
    if world.s.failures:
        fig, axes = plt.subplots(3, 1, figsize=(9, 9))
        axes[0].plot(x, rec.row("mcs_alive"), label="MCs alive")
        axes[0].plot(x, rec.row("mcs_placeable"), label="MCs placeable (GC view)")
        axes[0].set_xlabel(xlabel)
        axes[0].legend()
        axes[0].set_title(f"{name}: failures and recovery")
        axes[1].plot(x, rec.rate("registrations"), label="registrations handled/s")
        axes[1].plot(x, rec.rate("register_attempts"), label="registration attempts/s")
        axes[1].set_xlabel(xlabel)
        axes[1].legend()
        times = sorted(world.replaced)
        if times:
            axes[2].plot(times, [(i + 1) / len(times) for i in range(len(times))])
        else:
            axes[2].text(0.5, 0.5, "no meeting lost its MC", ha="center", va="center")
        axes[2].set_xlabel("seconds from losing its MC to a join answered by a live MC")
        axes[2].set_ylabel("share of lost meetings")
        for ax in axes[:2]:
            _mark_failures(ax, world, scale)
        save(fig, "failures.png")
    return written
