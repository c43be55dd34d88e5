"""`darktower gc` runs a GC; `darktower join` and `darktower status` talk to one over HTTP."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import httpx
import typer
from rich.console import Console

from darktower.gc.status_view import FleetView, renderables, status_document
from darktower.mc.errors import InvalidArgument
from darktower.mc.validation import validate_meeting_id
from darktower.service_cli import run_service
from darktower.settings_doc import documented_by

__all__ = [
    "DEFAULT_GC_URL",
    "MEETINGS_LIMIT",
    "UNREACHABLE_HINT",
    "check_meeting_id",
    "gc",
    "gc_error_line",
    "join",
    "printable",
    "status",
]

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


@documented_by("darktower.gc.settings", "GcSettings")
def gc() -> None:
    """Run a Global Controller configured from GC_* environment variables (SPEC §8)."""
    # Imported here: every `darktower` command loads this module, only `gc` needs the GC stack.
    from darktower.gc.server import serve
    from darktower.gc.settings import GcSettings

    run_service("gc", "GC_", GcSettings, serve)


REQUEST_TIMEOUT_S = 40.0
# The largest page of `GET /v1/meetings` (`darktower.gc.http.MAX_MEETINGS_LIMIT`; not imported:
# that module loads the whole GC, and every `darktower` command loads this one).
MEETINGS_LIMIT = 1000
UNREACHABLE_HINT = (
    "start a local fleet with `darktower dev`, or name a running GC with --gc-url URL "
    "(or DARKTOWER_GC_URL)"
)


def printable(value: str, limit: int = 60) -> str:
    """`value` fit for one line of a message: characters that are not printable (newlines,
    escapes, bidirectional controls) shown escaped, at most `limit` characters kept."""
    shown = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
        for ch in value[:limit]
    )
    return f"{shown}… ({len(value)} characters)" if len(value) > limit else shown


def check_meeting_id(value: str) -> str:
    """`value` if it is a meeting id by the project's rule (1 to 255 UTF-8 bytes of letters,
    digits, `-`, `_`); otherwise say why on stderr and exit 2, before anything is sent."""
    try:
        return validate_meeting_id(value)
    except InvalidArgument as exc:
        reason = "must not be empty" if not value else exc.reason
        typer.echo(f"darktower: invalid meeting id '{printable(value)}': {reason}", err=True)
        raise typer.Exit(2) from None


def _shown_url(url: str) -> str:
    """`url` without user info: a password in --gc-url is never printed."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(the given URL)"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return parts._replace(netloc=netloc).geturl()


def gc_error_line(status_code: int, body: bytes) -> str:
    """One readable line for a GC error answer: `GC answered 503: all_at_capacity — <message>`
    for the GC's `{error, reason, message}`, the `detail` of a FastAPI error, else the body."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        reason, message = data.get("reason"), data["message"]
        # A 400 names the field in both: `meeting_id — meeting_id: must be …` says it twice.
        if isinstance(reason, str) and reason and not message.startswith(f"{reason}:"):
            text = f"{reason} — {message}"
        else:
            text = message
    elif isinstance(data, dict) and isinstance(data.get("detail"), str):
        text = data["detail"]
    else:
        text = body.decode("utf-8", "replace").strip() or "(no body)"
    return f"GC answered {status_code}: {printable(text, 300)}"


def _request(method: str, base: str, path: str) -> Any:
    """The GC's JSON answer to `method base+path`. Exits 2 when the GC cannot be reached (with
    the hint to start one), 1 when it answers an error (one readable line)."""
    shown = _shown_url(base)
    try:
        response = httpx.request(method, f"{base}{path}", timeout=REQUEST_TIMEOUT_S)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol) as exc:
        typer.echo(f"darktower: cannot reach the GC at {shown} ({type(exc).__name__})", err=True)
        typer.echo(f"darktower: {UNREACHABLE_HINT}", err=True)
        raise typer.Exit(2) from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        typer.echo(f"darktower: no answer from the GC at {shown} ({type(exc).__name__})", err=True)
        raise typer.Exit(2) from None
    if response.is_error:
        typer.echo(f"darktower: {gc_error_line(response.status_code, response.content)}", err=True)
        raise typer.Exit(1)
    try:
        return response.json()
    except ValueError:
        typer.echo(
            f"darktower: the GC at {shown} answered {response.status_code} with a body that "
            "is not JSON",
            err=True,
        )
        raise typer.Exit(1) from None


def join(
    meeting_id: Annotated[
        str,
        typer.Argument(
            help="The meeting to join (placed if needed): 1-255 letters, digits, '-', '_'."
        ),
    ],
    gc_url: GcUrl = None,
) -> None:
    """Place a meeting through a GC; print the answer as JSON."""
    check_meeting_id(meeting_id)
    path = f"/v1/meetings/{quote(meeting_id, safe='')}/join"
    body = _request("POST", _gc_url(gc_url), path)
    typer.echo(json.dumps(body, indent=2))


def status(
    gc_url: GcUrl = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="One JSON document: the MCs (with the meetings each hosts), the MHs."
        ),
    ] = False,
) -> None:
    """The fleet: every MC with health, load, heartbeat age and the meetings it hosts; the MHs."""
    base = _gc_url(gc_url)
    controllers = _request("GET", base, "/v1/controllers")
    handlers = _request("GET", base, "/v1/media-handlers")
    meetings = _request("GET", base, f"/v1/meetings?limit={MEETINGS_LIMIT}")
    view = FleetView(
        gc_url=_shown_url(base),
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
