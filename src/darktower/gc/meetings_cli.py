"""`darktower meetings`: the meeting API of a GC from a shell (README "Application API").

    darktower meetings create [ID] [--max-participants N] [--empty-timeout S] [--metadata T]
    darktower meetings list [--limit N] [--offset N] [--json]
    darktower meetings show ID [--json]
    darktower meetings end ID
    darktower meetings kick ID IDENTITY
    darktower meetings mute ID IDENTITY [--unmute]

Each request carries --token (or DARKTOWER_ACCESS_TOKEN), else an admin token minted with the
running dev fleet's API key when the GC is that fleet's. Like `join` and `status`: a bad
meeting id or identity exits 2 before anything is sent, an unreachable GC exits 2, an error
answer is one line (`darktower: GC answered 409: not_hosted — …`) and exits 1.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

import typer

from darktower.cli_support import (
    AccessTokenOpt,
    CaFile,
    GcUrl,
    check_meeting_id,
    printable,
)
from darktower.common.errors import InvalidField
from darktower.common.names import validate_user_id
from darktower.gc.http_client import MEETINGS_LIMIT, connect

__all__ = ["meetings_app"]

meetings_app = typer.Typer(
    help="Create, list, show and end meetings; remove or mute a participant (the meeting API).",
    no_args_is_help=True,
)

Identity = Annotated[
    str, typer.Argument(help="The participant's identity: its access token's `sub` (user id).")
]
MeetingId = Annotated[str, typer.Argument(help="The meeting id.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the GC's answer as JSON.")]


def _call(
    method: str,
    path: str,
    gc_url: str | None,
    ca_file: Any,
    token: str | None,
    body: Any = None,
) -> Any:
    conn = connect(gc_url, ca_file, token, identity="darktower-meetings", admin=True)
    return conn.request(method, path, body=body)


def _meeting_path(meeting_id: str) -> str:
    return f"/v1/meetings/{quote(check_meeting_id(meeting_id), safe='')}"


def _identity(value: str) -> str:
    try:
        return validate_user_id(value, "identity")
    except InvalidField as exc:
        typer.echo(f"darktower: invalid identity '{printable(value)}': {exc.reason}", err=True)
        raise typer.Exit(2) from None


@meetings_app.command("create")
def create(
    meeting_id: Annotated[
        str | None, typer.Argument(help="The meeting id (default: a new random one).")
    ] = None,
    max_participants: Annotated[
        int | None, typer.Option("--max-participants", help="Participant cap.")
    ] = None,
    empty_timeout: Annotated[
        int | None,
        typer.Option("--empty-timeout", help="Seconds the meeting lives with nobody connected."),
    ] = None,
    metadata: Annotated[
        str | None, typer.Option("--metadata", help="Text (at most 4 KiB) sent to each client.")
    ] = None,
    gc_url: GcUrl = None,
    ca_file: CaFile = None,
    token: AccessTokenOpt = None,
) -> None:
    """Create a meeting with settings (or find the one placed already); print the answer."""
    body: dict[str, Any] = {}
    if meeting_id is not None:
        body["meeting_id"] = check_meeting_id(meeting_id)
    for key, value in (
        ("max_participants", max_participants),
        ("empty_timeout_seconds", empty_timeout),
        ("metadata", metadata),
    ):
        if value is not None:
            body[key] = value
    answer = _call("POST", "/v1/meetings", gc_url, ca_file, token, body)
    typer.echo(json.dumps(answer, indent=2))


@meetings_app.command("list")
def list_meetings(
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=MEETINGS_LIMIT, help="At most this many.")
    ] = 100,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many first.")] = 0,
    as_json: AsJson = False,
    gc_url: GcUrl = None,
    ca_file: CaFile = None,
    token: AccessTokenOpt = None,
) -> None:
    """The live meetings, most participants first: id, MC, participants."""
    answer = _call("GET", f"/v1/meetings?limit={limit}&offset={offset}", gc_url, ca_file, token)
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
        return
    rows = answer["meetings"]
    for m in rows:
        typer.echo(f"{m['meeting_id']}  {m['mc_id']}  {m['participants']} participants")
    typer.echo(f"{len(rows)} shown of {answer['total']} meetings (from {offset})")


@meetings_app.command("show")
def show(
    meeting_id: MeetingId,
    as_json: AsJson = False,
    gc_url: GcUrl = None,
    ca_file: CaFile = None,
    token: AccessTokenOpt = None,
) -> None:
    """The meeting (MC, settings) and its live roster."""
    path = _meeting_path(meeting_id)
    meeting = _call("GET", path, gc_url, ca_file, token)
    roster = _call("GET", f"{path}/participants", gc_url, ca_file, token)
    if as_json:
        typer.echo(json.dumps({"meeting": meeting, "participants": roster}, indent=2))
        return
    settings = meeting.get("settings") or {}
    typer.echo(
        f"{meeting['meeting_id']} on {meeting['mc_id']} ({meeting['state']}), "
        f"{len(roster['participants'])} participants"
    )
    typer.echo(
        "settings: "
        + ", ".join(f"{k}={v}" for k, v in settings.items() if k != "metadata")
        + (f", metadata={printable(settings['metadata'])}" if settings.get("metadata") else "")
    )
    for p in roster["participants"]:
        flags = [f for f, on in (("host", p["host"]), ("muted", p["muted"])) if on] + (
            ["host-muted"] if p["host_muted"] else []
        )
        if not p["connected"]:
            flags.append("disconnected")
        shown = f"{printable(p['identity'])}  {printable(p['name'])}  {p['role']}"
        typer.echo(shown + (f"  [{', '.join(flags)}]" if flags else ""))


@meetings_app.command("end")
def end(
    meeting_id: MeetingId,
    gc_url: GcUrl = None,
    ca_file: CaFile = None,
    token: AccessTokenOpt = None,
) -> None:
    """End the meeting: every participant is told `meeting_ended`."""
    answer = _call("DELETE", _meeting_path(meeting_id), gc_url, ca_file, token)
    typer.echo(f"ended {answer['meeting_id']} ({answer['participants']} participants)")


@meetings_app.command("kick")
def kick(
    meeting_id: MeetingId,
    identity: Identity,
    gc_url: GcUrl = None,
    ca_file: CaFile = None,
    token: AccessTokenOpt = None,
) -> None:
    """Remove the identity from the meeting; it cannot join it again."""
    path = f"{_meeting_path(meeting_id)}/participants/{quote(_identity(identity), safe='')}"
    answer = _call("DELETE", path, gc_url, ca_file, token)
    typer.echo(
        f"removed {answer['identity']} from {answer['meeting_id']} ({answer['sessions']} sessions)"
    )


@meetings_app.command("mute")
def mute(
    meeting_id: MeetingId,
    identity: Identity,
    unmute: Annotated[bool, typer.Option("--unmute", help="Lift the host mute.")] = False,
    gc_url: GcUrl = None,
    ca_file: CaFile = None,
    token: AccessTokenOpt = None,
) -> None:
    """Host-mute the identity (as the meeting's host would)."""
    path = f"{_meeting_path(meeting_id)}/participants/{quote(_identity(identity), safe='')}/mute"
    answer = _call("POST", path, gc_url, ca_file, token, {"muted": not unmute})
    verb = "unmuted" if unmute else "muted"
    typer.echo(f"{verb} {answer['identity']} in {answer['meeting_id']}")
