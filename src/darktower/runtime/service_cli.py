"""What `darktower mc` and `darktower gc` share: settings errors without secrets, logging with
redaction (text or JSON lines), the tracer provider (`darktower.runtime.tracing_setup`), and one
exit code (2) for a service that cannot start."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

import typer
from pydantic import ValidationError

from darktower.auth.errors import AuthError
from darktower.runtime.event_loop import loop_factory, loop_name
from darktower.runtime.logs import configure_logging
from darktower.runtime.serving import StartupError
from darktower.runtime.tracing_setup import configure_tracing

__all__ = ["run_service", "settings_errors"]

log = logging.getLogger("darktower.service")


class ServiceSettings(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def log_level(self) -> str: ...

    @property
    def log_format(self) -> str: ...

    @property
    def event_loop(self) -> str: ...

    def secret_values(self) -> list[str]: ...


S = TypeVar("S", bound=ServiceSettings)


def settings_errors(exc: ValidationError, env_prefix: str) -> str:
    """Variable and problem only: pydantic's own text would echo the input (a secret URL).
    An error of the whole settings (contradictory values) names its variables itself."""
    return "; ".join(
        f"{env_prefix}{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
        if err["loc"]
        else err["msg"]
        for err in exc.errors()
    )


def run_service(
    command: str,
    env_prefix: str,
    load: Callable[[], S],
    serve: Callable[[S], Coroutine[Any, Any, None]],
) -> None:
    """Load the settings, set up logging with every secret redacted and tracing as service
    `darktower-<command>`, serve until stopped (then flush the spans); a bad setting or a
    failed start is one line on stderr and exit code 2."""
    try:
        settings = load()
    except ValidationError as exc:
        typer.echo(
            f"darktower {command}: bad settings: {settings_errors(exc, env_prefix)}", err=True
        )
        raise typer.Exit(2) from None
    service = f"darktower-{command}"
    configure_logging(
        settings.log_level,
        secrets=settings.secret_values(),
        log_format=settings.log_format,
        service=service,
        instance_id=settings.id,
    )
    try:
        tracing = configure_tracing(service, settings.id)
        try:
            with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
                log.debug("event loop: %s", loop_name(runner.get_loop()))
                runner.run(serve(settings))
        finally:
            tracing.shutdown()
    except (StartupError, AuthError, OSError) as exc:
        typer.echo(f"darktower {command}: {exc}", err=True)
        raise typer.Exit(2) from None
