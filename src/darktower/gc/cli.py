"""`darktower gc` runs a GC; `darktower join` and `darktower status` talk to one over HTTP."""

from __future__ import annotations

import json
from typing import Annotated
from urllib.parse import quote

import typer
from rich.console import Console

from darktower.cli_support import (
    AccessTokenOpt,
    CaFile,
    GcUrl,
    check_meeting_id,
    printable,
)
from darktower.gc.http_client import MEETINGS_LIMIT, connect, shown_url
from darktower.gc.status_view import FleetView, renderables, status_document
from darktower.runtime.service_cli import run_service
from darktower.runtime.settings_doc import documented_by

__all__ = ["drain", "gc", "join", "status"]


@documented_by("darktower.gc.settings", "GcSettings")
def gc() -> None:
    """Run a Global Controller configured from GC_* environment variables (docs/reference.md)."""
    # Imported here: every `darktower` command loads this module, only `gc` needs the GC stack.
    from darktower.gc.server import serve
    from darktower.gc.settings import GcSettings

    run_service("gc", "GC_", GcSettings, serve)


def join(
    meeting_id: Annotated[
        str,
        typer.Argument(
            help="The meeting to join (placed if needed): 1-255 letters, digits, '-', '_'."
        ),
    ],
    gc_url: GcUrl = None,
    ca_file: CaFile = None,
    token: AccessTokenOpt = None,
    page: Annotated[
        bool,
        typer.Option(
            "--page",
            help="Join nothing here: print the GC's /join page address for the meeting with "
            "the access token in its #fragment, to open in a browser.",
        ),
    ] = False,
) -> None:
    """Place a meeting through a GC; print the answer as JSON. The join carries --token, else
    one minted with the dev fleet's API key, else none (a guest). With --page, print the join
    page's address carrying that token instead."""
    check_meeting_id(meeting_id)
    conn = connect(gc_url, ca_file, token, meeting_id=meeting_id)
    if page:
        if conn.access is None:
            typer.echo(
                "darktower: no access token for the page: pass --token (or set "
                "DARKTOWER_ACCESS_TOKEN), or run next to a darktower dev fleet",
                err=True,
            )
            raise typer.Exit(2)
        where = shown_url(conn.base).rstrip("/")
        # A fragment never reaches a server; the page removes it from the address bar.
        typer.echo(f"{where}/join?meeting={quote(meeting_id, safe='')}#token={conn.access}")
        return
    path = f"/v1/meetings/{quote(meeting_id, safe='')}/join"
    body = conn.request("POST", path)
    typer.echo(json.dumps(body, indent=2))


def status(
    gc_url: GcUrl = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="One JSON document: the MCs (with the meetings each hosts), the MHs."
        ),
    ] = False,
    ca_file: CaFile = None,
    token: AccessTokenOpt = None,
) -> None:
    """The fleet: every MC with health, load, heartbeat age and the meetings it hosts; the MHs.
    The reads carry --token (it needs the admin grant), else an admin token minted with the
    dev fleet's API key, else none (enough when the GC allows guests)."""
    conn = connect(gc_url, ca_file, token, identity="darktower-status", admin=True)
    controllers = conn.request("GET", "/v1/controllers")
    handlers = conn.request("GET", "/v1/media-handlers")
    meetings = conn.request("GET", f"/v1/meetings?limit={MEETINGS_LIMIT}")
    view = FleetView(
        gc_url=shown_url(conn.base),
        controllers=controllers,
        media_handlers=handlers,
        meetings=meetings["meetings"],
        meetings_total=meetings["total"],
    )
    if as_json:
        typer.echo(json.dumps(status_document(view), indent=2))
        return
    console = Console(highlight=False)
    for renderable in renderables(view, console.width):
        console.print(renderable)


def drain(
    mc_id: Annotated[str, typer.Argument(help="The MC to drain (its id, as `status` lists it).")],
    gc_url: GcUrl = None,
    ca_file: CaFile = None,
    token: AccessTokenOpt = None,
) -> None:
    """Drain one MC: the GC asks it to move its meetings to other MCs, live (clients follow a
    redirect, nobody leaves), end what cannot move at its deadline, and exit 0. Needs an access
    token with the admin grant (--token, else one minted with the dev fleet's API key)."""
    path = f"/v1/controllers/{quote(mc_id, safe='')}/drain"
    answer = connect(gc_url, ca_file, token, identity="darktower-drain", admin=True).request(
        "POST", path
    )
    typer.echo(
        f"{printable(answer['controller_id'])} is draining: {answer['meetings']} meetings "
        "to move to other MCs; it exits once they have"
    )
