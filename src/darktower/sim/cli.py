"""`darktower sim`: run scenario files through the fleet simulator, or check it against the
committed benchmark results (`--validate`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["sim"]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def sim(
    scenarios: Annotated[
        list[Path] | None, typer.Argument(help="Scenario files (TOML), e.g. scenarios/*.toml.")
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Directory for the results; one subdirectory per scenario.")
    ] = Path("sim-results"),
    plots: Annotated[
        bool, typer.Option(help="Write PNG plots (needs matplotlib: the sim extra).")
    ] = True,
    seed: Annotated[int | None, typer.Option(min=0, help="Override the scenarios' seed.")] = None,
    validate: Annotated[
        bool,
        typer.Option(
            "--validate",
            help="Run the validation scenarios and compare them with bench/results and the "
            "fault suite's recovery times (run from the repository).",
        ),
    ] = False,
) -> None:
    """Simulate a region of GCs, MCs, MHs and Redis shards in simulated time, with the
    services' own placement and admission code; write summary.json, series.json and plots."""
    from darktower.sim.plots import INSTALL_HINT
    from darktower.sim.runner import run_scenario, write_outputs
    from darktower.sim.scenario import ScenarioError, load_scenario

    if validate:
        from darktower.sim.validation import format_checks, run_validation

        checks = run_validation(Path.cwd())
        typer.echo(format_checks(checks))
        raise typer.Exit(0 if all(c.ok for c in checks) else 1)
    if not scenarios:
        typer.echo("darktower sim: give one or more scenario files (or --validate)", err=True)
        raise typer.Exit(2)
    loaded = []
    for path in scenarios:
        try:
            scenario = load_scenario(path)
        except ScenarioError as exc:
            typer.echo(f"darktower sim: {path}: {_one_line(str(exc))}", err=True)
            raise typer.Exit(2) from None
        if seed is not None:
            scenario = dataclasses.replace(scenario, seed=seed)
        loaded.append(scenario)
    for scenario in loaded:
        outcome = run_scenario(scenario)
        target = out / scenario.name
        write_outputs(outcome, target, plots=plots)
        s = outcome.summary
        joins = s["joins"]
        typer.echo(
            f"{scenario.name}: {s['meetings']['placed']} meetings placed, peak "
            f"{s['meetings']['peak_concurrent']} concurrent on {s['fleet']['mcs']} MCs; joins "
            f"p50/p99 {joins['p50_ms']}/{joins['p99_ms']} ms, {joins['failed_joins']} failed; "
            f"{s['wall_s']} s wall clock → {target}/summary.json"
        )
        failures = s["failures"]
        if failures:
            typer.echo("  failures: " + json.dumps(failures, separators=(",", ":")))
        if plots and not isinstance(s.get("plots"), list):
            typer.echo(f"  {INSTALL_HINT}")
