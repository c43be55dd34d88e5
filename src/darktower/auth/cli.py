"""`darktower keys generate` and `darktower token` (SPEC §8): parse, delegate, report.

Errors a user can fix (a missing or wrong key file, an unknown service name, files that would
be overwritten) end the command with one line on stderr and exit code 2, no traceback.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from darktower.auth.errors import KeyFileError
from darktower.auth.keys import generate_key_files, load_private_key
from darktower.auth.tokens import DEFAULT_TTL_SECONDS, SERVICE_PROFILES, mint_service_token

__all__ = ["USAGE_ERROR_EXIT", "keys_app", "token"]

# Same code click uses for usage errors: "you asked for something that cannot be done".
USAGE_ERROR_EXIT = 2

keys_app = typer.Typer(
    help="Service key pairs (Ed25519) for signing and checking service tokens.",
    no_args_is_help=True,
)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(USAGE_ERROR_EXIT)


@keys_app.command("generate")
def generate(
    out: Annotated[
        Path, typer.Option("--out", help="Directory for {gc,mc,mh}.key and {gc,mc,mh}.pub.")
    ],
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing key files.")] = False,
) -> None:
    """Write a key pair per service type: DIR/{gc,mc,mh}.key (0600) and DIR/{gc,mc,mh}.pub."""
    try:
        paths = generate_key_files(out, force=force)
    except KeyFileError as exc:
        _fail(str(exc))
    for path in paths:
        typer.echo(str(path))


def token(
    service: Annotated[
        str,
        typer.Option("--service", help="Who the token is for: gc, mc or mh."),
    ],
    key: Annotated[Path, typer.Option("--key", help="The service's private key file (PEM).")],
    ttl: Annotated[int, typer.Option("--ttl", help="Lifetime in seconds.", min=1)] = (
        DEFAULT_TTL_SECONDS
    ),
    issuer: Annotated[
        str | None,
        typer.Option("--issuer", help="The `iss` claim. Default: <service>@<hostname>."),
    ] = None,
) -> None:
    """Print a service token signed with KEY, for calls made by SERVICE (gc, mc or mh)."""
    profile = SERVICE_PROFILES.get(service)
    if profile is None:
        _fail(f"unknown service {service!r}; expected one of {', '.join(SERVICE_PROFILES)}")
    service_type, scope = profile
    try:
        private_key = load_private_key(key)
    except KeyFileError as exc:
        _fail(str(exc))
    typer.echo(
        mint_service_token(
            private_key,
            service_type=service_type,
            scope=scope,
            issuer=issuer or f"{service}@{socket.gethostname()}",
            ttl_seconds=ttl,
        )
    )
