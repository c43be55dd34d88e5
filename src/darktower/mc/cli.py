"""`darktower mc`: run one Meeting Controller from `MC_*` settings."""

from __future__ import annotations

import asyncio

import typer
from pydantic import ValidationError

from darktower.auth.errors import AuthError
from darktower.logs import configure_logging
from darktower.serving import StartupError

__all__ = ["mc"]


def settings_errors(exc: ValidationError) -> str:
    """Field and problem only: pydantic's own text would echo the input (a secret URL, say)."""
    return "; ".join(
        f"MC_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
    )


def mc() -> None:
    """Run a Meeting Controller configured from MC_* environment variables (SPEC §8)."""
    # Imported here: every `darktower` command loads this module, only `mc` needs the MC stack.
    from darktower.mc.server import serve
    from darktower.mc.settings import McSettings

    try:
        settings = McSettings()
    except ValidationError as exc:
        typer.echo(f"darktower mc: bad settings: {settings_errors(exc)}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, secrets=settings.secret_values())
    try:
        asyncio.run(serve(settings))
    except (StartupError, AuthError, OSError) as exc:
        typer.echo(f"darktower mc: {exc}", err=True)
        raise typer.Exit(2) from None
