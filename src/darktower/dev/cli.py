"""`darktower dev`: start the local fleet, print where everything runs, stop it all on Ctrl-C."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from darktower.dev.fleet import Fleet, FleetPorts, PortInUse

__all__ = ["dev"]


def dev(
    mcs: Annotated[int, typer.Option(min=1, max=50, help="How many MCs to start.")] = 3,
    mhs: Annotated[int, typer.Option(min=0, max=50, help="How many simulated MHs.")] = 4,
    redis_url: Annotated[
        str | None, typer.Option(help="Use this Redis instead of an embedded one.")
    ] = None,
    db_url: Annotated[
        str | None, typer.Option(help="Use this database for the GC instead of SQLite.")
    ] = None,
    gc_http_port: Annotated[int, typer.Option(help="The GC's HTTP port.")] = 8080,
    any_port: Annotated[
        bool, typer.Option(help="Use free ports instead of the defaults (GC HTTP 8080, …).")
    ] = False,
) -> None:
    """Run a local fleet in the foreground: Redis, a GC, MCs and simulated MHs."""
    ports = FleetPorts(gc_http=gc_http_port, any_free=any_port)
    fleet = Fleet(mcs=mcs, mhs=mhs, redis_url=redis_url, db_url=db_url, ports=ports)
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
    for column in ("service", "id", "pid", "gRPC", "HTTP"):
        table.add_column(column)
    redis_where = fleet.effective_redis_url.rsplit("@", 1)[-1]  # never print a password
    redis_pid = str(fleet.redis.pid) if fleet.redis else ""
    table.add_row("redis", "embedded" if fleet.redis else "given", redis_pid, redis_where, "")
    for s in fleet.services:
        table.add_row(s.kind, s.name, str(s.process.pid), s.grpc, s.http)
    console.print(table)
    console.print(f"dashboard / API: {fleet.gc_url}   join page: {fleet.gc_url}/join")
    console.print(f"logs: {fleet.workdir}")
    console.print("try: darktower join standup   (join and status find this fleet by themselves)")
    console.print("Ctrl-C stops everything.")
    while not stop.wait(0.5):
        if gone := fleet.exited():
            typer.echo(f"darktower dev: {gone[0].name} exited; stopping the fleet", err=True)
            break
    fleet.stop()
