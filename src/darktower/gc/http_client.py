"""What the commands that talk to a running GC over HTTP share (`darktower join`, `status`,
`drain`, `meetings`): finding the GC, its TLS trust and the access token in one step
(`connect`), one JSON request with readable failures (`gc_request`: exit 2 when the GC cannot
be reached, 1 when it answers an error, one line `gc_error_line`), and a URL fit to print
(`shown_url`, never a password)."""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import typer

from darktower.cli_support import (
    UNREACHABLE_HINT,
    access_token_for,
    printable,
    resolve_gc_url,
    tls_context,
)
from darktower.common.tls_errors import tls_failure

__all__ = [
    "MEETINGS_LIMIT",
    "REQUEST_TIMEOUT_S",
    "GcConnection",
    "connect",
    "gc_error_line",
    "gc_request",
    "shown_url",
]

REQUEST_TIMEOUT_S = 40.0
# The largest page of `GET /v1/meetings` (`darktower.gc.http.MAX_MEETINGS_LIMIT`; not imported:
# that module loads the whole GC, and every `darktower` command loads this one).
MEETINGS_LIMIT = 1000


def shown_url(url: str) -> str:
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


def gc_request(
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
    shown = shown_url(base)
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


@dataclass(frozen=True)
class GcConnection:
    """A GC to send requests to: its URL, what its TLS is verified with, the access token."""

    base: str
    verify: ssl.SSLContext
    access: str | None

    def request(self, method: str, path: str, *, body: Any = None) -> Any:
        """The GC's JSON answer (`gc_request`)."""
        return gc_request(method, self.base, path, self.verify, self.access, body=body)


def connect(
    gc_url: str | None,
    ca_file: Path | None,
    token: str | None,
    *,
    meeting_id: str | None = None,
    identity: str | None = None,
    admin: bool = False,
) -> GcConnection:
    """The GC (`resolve_gc_url`), the access token for it (`access_token_for`: --token, else one
    minted with the dev fleet's API key, else none) and its TLS trust (`tls_context`)."""
    base = resolve_gc_url(gc_url)
    access = access_token_for(token, base, meeting_id=meeting_id, identity=identity, admin=admin)
    return GcConnection(base, tls_context(ca_file), access)
