"""`darktower api-key create` and `darktower access-token`: parse, delegate, report.

Errors a user can fix (a key file that exists or cannot be read, a lifetime over 24 h, a bad
identity, name or meeting id) end the command with one line on stderr and exit code 2; a
secret or a token is never part of such a line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from darktower.auth.access_tokens import DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS, mint_access_token
from darktower.auth.api_keys import (
    ApiKeyError,
    generate_api_key,
    load_api_key_file,
    write_api_key_file,
)

__all__ = ["access_token", "api_key_app"]

USAGE_ERROR_EXIT = 2

api_key_app = typer.Typer(
    help="API keys: an application signs access tokens with one (GC_API_KEY_FILES trusts it).",
    no_args_is_help=True,
)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(USAGE_ERROR_EXIT)


@api_key_app.command("create")
def create(
    out: Annotated[Path, typer.Option("--out", help="The key file to write (JSON, 0600).")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a new API key, {"key_id", "secret"}, to FILE (0600, atomically; an existing file
    is kept unless --force) and print its key id."""
    key = generate_api_key()
    try:
        write_api_key_file(out, key, force=force)
    except FileExistsError:
        _fail(f"{out} exists (use --force to overwrite it)")
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror or 'error'}")
    typer.echo(key.key_id)


def access_token(
    key_file: Annotated[
        Path, typer.Option("--key-file", help="The API key file (darktower api-key create).")
    ],
    identity: Annotated[
        str, typer.Option("--identity", help="The user's identity (sub): their user id.")
    ],
    meeting: Annotated[
        str | None,
        typer.Option("--meeting", help="The one meeting it admits to (optional with --admin)."),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="The display name others see.")] = None,
    role: Annotated[str, typer.Option("--role", help="host or participant.")] = "participant",
    ttl: Annotated[
        int,
        typer.Option("--ttl", help=f"Lifetime in seconds, at most {MAX_TTL_SECONDS} (24 h)."),
    ] = DEFAULT_TTL_SECONDS,
    admin: Annotated[
        bool, typer.Option("--admin", help="Grant the operator reads (controllers, …).")
    ] = False,
) -> None:
    """Print an access token (HS256 JWT) signed with the API key in --key-file."""
    try:
        key = load_api_key_file(key_file)
    except ApiKeyError as exc:
        _fail(str(exc))
    if role not in ("host", "participant"):
        _fail("--role must be host or participant")
    try:
        token = mint_access_token(
            key,
            identity=identity,
            meeting_id=meeting,
            name=name,
            role="host" if role == "host" else "participant",
            admin=admin,
            ttl_seconds=ttl,
        )
    except ValueError as exc:  # InvalidField is a ValueError: names the option's claim
        _fail(str(exc))
    typer.echo(token)
