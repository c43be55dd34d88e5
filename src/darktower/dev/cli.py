"""`darktower dev`: start the local fleet, print where everything runs, stop it all on Ctrl-C."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from darktower.dev.fleet import Fleet, PortInUse

__all__ = ["dev"]


def dev(
    mcs: Annotated[int, typer.Option(min=1, max=50, help="How many MCs to start.")] = 3,
    redis_url: Annotated[
        str | None, typer.Option(help="Use this Redis instead of an embedded one.")
    ] = None,
    base_port: Annotated[
        int, typer.Option(help="First MC gRPC port (health ports start at +1000); 0 = any free.")
    ] = 50052,
) -> None:
    """Run a local fleet: an embedded Redis and N Meeting Controllers, in the foreground."""
    fleet = Fleet(
        mcs, redis_url, base_grpc=base_port, base_health=base_port + 1000 if base_port else 0
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    console = Console()
    try:
        fleet.start()
    except (PortInUse, RuntimeError) as exc:
        fleet.stop()
        typer.echo(f"darktower dev: {exc}", err=True)
        raise typer.Exit(2) from None
    table = Table(title="darktower local fleet")
    for column in ("service", "id", "gRPC", "health"):
        table.add_column(column)
    table.add_row(
        "redis", "embedded" if fleet.redis else "given", fleet.redis_url.split("@")[-1], ""
    )
    for mc in fleet.mcs:
        table.add_row(
            "mc",
            mc.mc_id,
            f"127.0.0.1:{mc.grpc_port}",
            f"http://127.0.0.1:{mc.health_port}/health/ready",
        )
    console.print(table)
    console.print(
        f"keys: {fleet.key_dir}  —  try: darktower assign demo --key {fleet.key_dir}/gc.key "
        f"--mc 127.0.0.1:{fleet.mcs[0].grpc_port}"
    )
    console.print("Ctrl-C stops everything.")
    while not stop.wait(0.5):
        if gone := fleet.exited():
            typer.echo(f"darktower dev: {gone[0].mc_id} exited; stopping the fleet", err=True)
            break
    fleet.stop()
