"""`darktower gc` runs a GC; `darktower join` and `darktower status` talk to one over HTTP."""

from __future__ import annotations

import json
import ssl
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import httpx
import typer
from rich.console import Console

from darktower.cli_support import (
    UNREACHABLE_HINT,
    AccessTokenOpt,
    CaFile,
    GcUrl,
    access_token_for,
    check_meeting_id,
    printable,
    resolve_gc_url,
    tls_context,
)
from darktower.common.tls_errors import tls_failure
from darktower.gc.status_view import FleetView, renderables, status_document
from darktower.runtime.service_cli import run_service
from darktower.runtime.settings_doc import documented_by

__all__ = ["MEETINGS_LIMIT", "gc", "gc_error_line", "gc_request", "join", "status"]


@documented_by("darktower.gc.settings", "GcSettings")
def gc() -> None:
    """Run a Global Controller configured from GC_* environment variables (docs/reference.md)."""
    # Imported here: every `darktower` command loads this module, only `gc` needs the GC stack.
    from darktower.gc.server import serve
    from darktower.gc.settings import GcSettings

    run_service("gc", "GC_", GcSettings, serve)


REQUEST_TIMEOUT_S = 40.0
# The largest page of `GET /v1/meetings` (`darktower.gc.http.MAX_MEETINGS_LIMIT`; not imported:
# that module loads the whole GC, and every `darktower` command loads this one).
MEETINGS_LIMIT = 1000


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


def _request(
    method: str,
    base: str,
    path: str,
    verify: ssl.SSLContext,
    token: str | None = None,
    *,
    body: Any = None,
) -> Any:
    """The GC's JSON answer to `method base+path` (an https:// GC verified with `verify`),
    sent with the access token `token` if any, and `body` as JSON if not None.
    Exits 2 when the GC cannot be reached (with the hint to start one, or the TLS reason), 1
    when it answers an error (one readable line)."""
    shown = _shown_url(base)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = httpx.request(
            method,
            f"{base}{path}",
            timeout=REQUEST_TIMEOUT_S,
            verify=verify,
            headers=headers,
            json=body,
        )
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol) as exc:
        tls = tls_failure(exc)
        if tls is not None:
            typer.echo(
                f"darktower: cannot reach the GC at {shown}: TLS handshake failed ({tls}); "
                "trust its CA with --ca-file (or DARKTOWER_CA_FILE)",
                err=True,
            )
            raise typer.Exit(2) from None
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


gc_request = _request  # for the other commands that talk to a GC (`darktower meetings`)


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
) -> None:
    """Place a meeting through a GC; print the answer as JSON. The join carries --token, else
    one minted with the dev fleet's API key, else none (a guest)."""
    check_meeting_id(meeting_id)
    path = f"/v1/meetings/{quote(meeting_id, safe='')}/join"
    base = resolve_gc_url(gc_url)
    access = access_token_for(token, base, meeting_id=meeting_id)
    body = _request("POST", base, path, tls_context(ca_file), access)
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
    base = resolve_gc_url(gc_url)
    verify = tls_context(ca_file)
    access = access_token_for(token, base, identity="darktower-status", admin=True)
    controllers = _request("GET", base, "/v1/controllers", verify, access)
    handlers = _request("GET", base, "/v1/media-handlers", verify, access)
    meetings = _request("GET", base, f"/v1/meetings?limit={MEETINGS_LIMIT}", verify, access)
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


def drain(
    mc_id: Annotated[str, typer.Argument(help="The MC to drain (its id, as `status` lists it).")],
    gc_url: GcUrl = None,
    ca_file: CaFile = None,
    token: AccessTokenOpt = None,
) -> None:
    """Drain one MC: the GC asks it to move its meetings to other MCs, live (clients follow a
    redirect, nobody leaves), end what cannot move at its deadline, and exit 0. Needs an access
    token with the admin grant (--token, else one minted with the dev fleet's API key)."""
    base = resolve_gc_url(gc_url)
    access = access_token_for(token, base, identity="darktower-drain", admin=True)
    path = f"/v1/controllers/{quote(mc_id, safe='')}/drain"
    answer = _request("POST", base, path, tls_context(ca_file), access)
    typer.echo(
        f"{printable(answer['controller_id'])} is draining: {answer['meetings']} meetings "
        "to move to other MCs; it exits once they have"
    )
