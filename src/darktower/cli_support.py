"""What the commands that talk to a GC share: finding its URL, the CA they trust for `https://`
GCs and `wss://` MCs, the access token they send, checking a meeting id before it goes into a
URL, printing untrusted text on one line. Used by `darktower join`/`status`
(`darktower.gc.cli`) and `darktower client` (`darktower.client.cli`); imports nothing of
either service, so loading it stays cheap for every `darktower` command.
"""

from __future__ import annotations

import os
import secrets
import ssl
from pathlib import Path
from typing import Annotated

import typer

from darktower.common.errors import InvalidField
from darktower.common.ids import validate_id

__all__ = [
    "ACCESS_TOKEN_ENV",
    "CA_FILE_ENV",
    "DEFAULT_GC_URL",
    "UNREACHABLE_HINT",
    "AccessTokenOpt",
    "CaFile",
    "GcUrl",
    "access_token_for",
    "check_meeting_id",
    "printable",
    "resolve_gc_url",
    "tls_context",
]

# Without --gc-url: DARKTOWER_GC_URL, else a running `darktower dev`, else the dev default.
DEFAULT_GC_URL = "http://127.0.0.1:8080"

GcUrl = Annotated[
    str | None, typer.Option("--gc-url", help="The GC's HTTP base URL (default: the dev fleet's).")
]

CA_FILE_ENV = "DARKTOWER_CA_FILE"

CaFile = Annotated[
    Path | None,
    typer.Option(
        "--ca-file",
        envvar=CA_FILE_ENV,
        help="CA certificate (PEM) trusted for an https:// GC and wss:// MCs "
        "(default: the system's roots).",
    ),
]

ACCESS_TOKEN_ENV = "DARKTOWER_ACCESS_TOKEN"  # noqa: S105 - a variable name, not a secret

AccessTokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar=ACCESS_TOKEN_ENV,
        help="Access token sent to the GC (Bearer; darktower access-token). Default: one "
        "minted with the running dev fleet's API key when the GC is that fleet's.",
        show_default=False,
    ),
]

UNREACHABLE_HINT = (
    "start a local fleet with `darktower dev`, or name a running GC with --gc-url URL "
    "(or DARKTOWER_GC_URL)"
)


def resolve_gc_url(value: str | None) -> str:
    """--gc-url, else DARKTOWER_GC_URL, else the newest running `darktower dev` (saying which
    on stderr, and naming the others if several run), else DEFAULT_GC_URL; no trailing `/`."""
    from darktower.dev.state import running_dev_gc_url

    def say(note: str) -> None:
        typer.echo(f"darktower: {note}", err=True)

    url = value or os.environ.get("DARKTOWER_GC_URL") or running_dev_gc_url(say) or DEFAULT_GC_URL
    return url.rstrip("/")


def access_token_for(
    token: str | None,
    gc_url: str,
    *,
    meeting_id: str | None = None,
    identity: str | None = None,
    name: str | None = None,
    admin: bool = False,
) -> str | None:
    """The access token to send to `gc_url`: `token` (--token or DARKTOWER_ACCESS_TOKEN) if
    given; else, when `gc_url` is a running `darktower dev` fleet's GC, one minted for
    `meeting_id` (or the admin grant) with that fleet's API key, for `identity` (default: a
    random `u-…` id), valid one hour; else None (the request goes without one)."""
    if token:
        return token
    from darktower.auth.access_tokens import mint_access_token
    from darktower.auth.api_keys import ApiKeyError, load_api_key_file
    from darktower.dev.state import StateDirError, running_fleets

    try:
        fleets = running_fleets()
    except StateDirError:
        return None
    for fleet in fleets:
        if fleet.gc_url.rstrip("/") != gc_url.rstrip("/") or not fleet.api_key_file:
            continue
        try:
            key = load_api_key_file(Path(fleet.api_key_file))
        except ApiKeyError:
            return None
        try:
            return mint_access_token(
                key,
                identity=identity or "u-" + secrets.token_hex(8),
                meeting_id=meeting_id,
                name=name,
                admin=admin,
            )
        except ValueError as exc:  # a user id or name the GC would refuse too
            typer.echo(f"darktower: cannot make an access token: {exc}", err=True)
            raise typer.Exit(2) from None
    return None


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """What https:// and wss:// peers are verified with: the CA in `ca_file` (--ca-file or
    DARKTOWER_CA_FILE), else the system's roots; host names are checked either way. A CA file
    that cannot be read is said on stderr, exit 2."""
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not PEM"
            typer.echo(f"darktower: cannot use the CA file {ca_file}: {reason}", err=True)
            raise typer.Exit(2) from None
    return context


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
        return validate_id(value, "meeting_id")
    except InvalidField as exc:
        reason = "must not be empty" if not value else exc.reason
        typer.echo(f"darktower: invalid meeting id '{printable(value)}': {reason}", err=True)
        raise typer.Exit(2) from None
