"""`darktower gc` runs a GC; `darktower join` and `darktower status` talk to one over HTTP."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from darktower.service_cli import run_service

__all__ = ["DEFAULT_GC_URL", "gc", "join", "status"]

# Without --gc-url: DARKTOWER_GC_URL, else a running `darktower dev`, else the dev default.
DEFAULT_GC_URL = "http://127.0.0.1:8080"

GcUrl = Annotated[
    str | None, typer.Option("--gc-url", help="The GC's HTTP base URL (default: the dev fleet's).")
]


def _gc_url(value: str | None) -> str:
    """--gc-url, else DARKTOWER_GC_URL, else the newest running `darktower dev` (saying which
    on stderr, and naming the others if several run), else DEFAULT_GC_URL."""
    from darktower.dev.state import running_dev_gc_url

    def say(note: str) -> None:
        typer.echo(f"darktower: {note}", err=True)

    url = value or os.environ.get("DARKTOWER_GC_URL") or running_dev_gc_url(say) or DEFAULT_GC_URL
    return url.rstrip("/")


def gc() -> None:
    """Run a Global Controller configured from GC_* environment variables (SPEC §8)."""
    # Imported here: every `darktower` command loads this module, only `gc` needs the GC stack.
    from darktower.gc.server import serve
    from darktower.gc.settings import GcSettings

    run_service("gc", "GC_", GcSettings, serve)


def _request(method: str, url: str) -> Any:
    try:
        response = httpx.request(method, url, timeout=40.0)
    except httpx.HTTPError as exc:
        typer.echo(f"darktower: cannot reach the GC at {url}: {type(exc).__name__}", err=True)
        raise typer.Exit(2) from None
    body = response.json() if response.content else {}
    if response.is_error:
        typer.echo(f"darktower: GC answered {response.status_code}: {json.dumps(body)}", err=True)
        raise typer.Exit(1)
    return body


def join(
    meeting_id: Annotated[str, typer.Argument(help="The meeting to join (placed if needed).")],
    gc_url: GcUrl = None,
) -> None:
    """Place a meeting through a GC; print the answer as JSON."""
    body = _request("POST", f"{_gc_url(gc_url)}/v1/meetings/{meeting_id}/join")
    typer.echo(json.dumps(body, indent=2))


def status(gc_url: GcUrl = None) -> None:
    """The fleet as a table: every MC with health, load and heartbeat age; the MHs."""
    base = _gc_url(gc_url)
    controllers = _request("GET", f"{base}/v1/controllers")
    handlers = _request("GET", f"{base}/v1/media-handlers")
    console = Console()
    table = Table(title=f"meeting controllers ({base})")
    for column in ("id", "region", "health", "meetings", "participants", "heartbeat age", "gRPC"):
        table.add_column(column)
    for c in controllers:
        age = c["heartbeat_age_s"]
        table.add_row(
            c["id"],
            c["region"],
            c["health"],
            f"{c['current_meetings']}/{c['max_meetings']}",
            f"{c['current_participants']}/{c['max_participants']}",
            "never" if age is None else f"{age:.1f}s",
            c["grpc_endpoint"],
        )
    console.print(table)
    if handlers:
        mh_table = Table(title="media handlers")
        for column in ("id", "region", "zone", "health", "streams"):
            mh_table.add_column(column)
        for h in handlers:
            mh_table.add_row(
                h["id"],
                h["region"],
                h["zone"] or "-",
                h["health"],
                f"{h['current_streams']}/{h['max_streams']}",
            )
        console.print(mh_table)
