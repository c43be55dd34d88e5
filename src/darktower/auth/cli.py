"""`darktower keys generate` and `darktower token` (docs/reference.md): parse, delegate, report.

Errors a user can fix (a missing or wrong key file, an unknown service name, files that would
be overwritten, a lifetime above the maximum) end the command with one line on stderr and exit
code 2, no traceback.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from darktower.auth.errors import KeyFileError
from darktower.auth.keys import (
    KEY_NAMES,
    ServiceKey,
    generate_instance_key_files,
    generate_key_files,
    load_service_key,
)
from darktower.auth.service_types import SERVICE_NAMES
from darktower.auth.tokens import (
    DEFAULT_MAX_LIFETIME_SECONDS,
    DEFAULT_TTL_SECONDS,
    SERVICE_PROFILES,
    mint_service_token,
)
from darktower.common.errors import InvalidField
from darktower.common.ids import validate_id

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
    out: Annotated[Path, typer.Option("--out", help="Directory for the key files.")],
    service: Annotated[
        str | None,
        typer.Option("--service", help="gc, mc or mh: one key pair for one instance (with --id)."),
    ] = None,
    instance_id: Annotated[
        str | None,
        typer.Option("--id", help="The instance the key pair is bound to, e.g. mc-1."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing key files.")] = False,
) -> None:
    """Without --service: the dev trio DIR/{gc,mc,mh}.key (0600) and .pub, bound to no instance.
    With --service S --id ID: DIR/ID.key (0600) and DIR/ID.pub, both bound to S and ID."""
    if (service is None) != (instance_id is None):
        _fail("--service and --id go together")
    try:
        if service is None or instance_id is None:
            paths = generate_key_files(out, force=force)
        else:
            paths = generate_instance_key_files(
                out, service=service, instance_id=instance_id, force=force
            )
    except KeyFileError as exc:
        _fail(str(exc))
    except ValueError as exc:
        _fail(str(exc))
    for path in paths:
        typer.echo(str(path))


def token(
    service: Annotated[
        str,
        typer.Option("--service", help="Who the token is for: gc, mc or mh."),
    ],
    key: Annotated[Path, typer.Option("--key", help="The service's private key file (PEM).")],
    ttl: Annotated[
        int,
        typer.Option(
            "--ttl", help=f"Lifetime in seconds, at most {DEFAULT_MAX_LIFETIME_SECONDS}.", min=1
        ),
    ] = DEFAULT_TTL_SECONDS,
    audience: Annotated[
        str | None,
        typer.Option("--audience", help="The `aud` claim: the instance the token is for."),
    ] = None,
    instance_id: Annotated[
        str | None,
        typer.Option(
            "--id", help="The `sub` claim for a legacy key (a bound key names its own instance)."
        ),
    ] = None,
    issuer: Annotated[
        str | None,
        typer.Option(
            "--issuer",
            help="The `iss` claim. Default: the key's instance, else --id, else <service>@<host>.",
        ),
    ] = None,
) -> None:
    """Print a service token signed with KEY, for calls made by SERVICE (gc, mc or mh).

    `sub` is the instance the key is bound to; for a legacy (unbound) key, --id, else the
    issuer."""
    profile = SERVICE_PROFILES.get(service)
    if profile is None:
        _fail(f"unknown service {service!r}; expected one of {', '.join(KEY_NAMES)}")
    service_type, scope = profile
    if ttl > DEFAULT_MAX_LIFETIME_SECONDS:
        _fail(f"--ttl {ttl} is above the maximum token lifetime ({DEFAULT_MAX_LIFETIME_SECONDS} s)")
    try:
        service_key = load_service_key(key)
    except KeyFileError as exc:
        _fail(str(exc))
    subject = _subject(service_key, service, instance_id)
    for value, option in ((subject, "--id"), (audience, "--audience")):
        if value is not None:
            try:
                validate_id(value, option)
            except InvalidField as exc:
                _fail(str(exc))
    issuer = issuer or subject or f"{service}@{socket.gethostname()}"
    typer.echo(
        mint_service_token(
            service_key.private_key,
            service_type=service_type,
            scope=scope,
            issuer=issuer,
            subject=subject,
            audience=audience,
            ttl_seconds=ttl,
        )
    )


def _subject(service_key: ServiceKey, service: str, instance_id: str | None) -> str | None:
    """The `sub`: the key's own instance (an --id naming another is an error), else --id."""
    if service_key.instance_id is None:
        return instance_id
    if service_key.service_type is not SERVICE_NAMES[service]:
        _fail(f"the key is bound to another service than {service!r}")
    if instance_id is not None and instance_id != service_key.instance_id:
        _fail(f"the key is bound to {service_key.instance_id!r}, not {instance_id!r}")
    return service_key.instance_id
