"""What the services' settings classes say about themselves: the environment variables and
their defaults for `--help`, and settings that contradict each other; and the one parsing rule
they share, `split_paths` (a list of key files given as one comma-separated variable).

Both are read from the pydantic-settings classes (`McSettings`, `GcSettings`), so the help
cannot drift from the code. A secret (`SecretStr`) is marked as one and its default is never
shown. A contradiction is a `Contradiction` naming both variables; the settings classes refuse
them in a validator, so a service with contradictory settings does not start.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings

__all__ = [
    "Contradiction",
    "documented_by",
    "env_help",
    "env_lines",
    "refuse",
    "shared_ports",
    "split_list",
    "split_paths",
]

WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Contradiction:
    """Two settings that cannot both hold: `first` and `second` are variable names with
    their values (`GC_STALENESS_SECONDS=3`), `why` what would go wrong."""

    first: str
    second: str
    why: str

    def __str__(self) -> str:
        return f"{self.first} contradicts {self.second}: {self.why}"


def refuse(contradictions: Iterable[Contradiction]) -> None:
    """Raise the validation error that carries every contradiction (none: return)."""
    found = [str(c) for c in contradictions]
    if found:
        # A custom error's message is a template: braces in a value must not be read as one.
        text = "; ".join(found).replace("{", "(").replace("}", ")")
        raise PydanticCustomError("contradictory_settings", text)


def shared_ports(binds: dict[str, str]) -> list[Contradiction]:
    """Listen addresses (variable → `host:port`) that would take one port twice: the same
    non-zero port on the same host, or on any host when either binds a wildcard."""
    from darktower.runtime.serving import parse_bind

    parsed = [(name, bind, *parse_bind(bind)) for name, bind in binds.items()]
    found = []
    for i, (name_a, bind_a, host_a, port_a) in enumerate(parsed):
        for name_b, bind_b, host_b, port_b in parsed[i + 1 :]:
            overlap = host_a == host_b or WILDCARD_HOSTS & {host_a, host_b}
            if port_a != 0 and port_a == port_b and overlap:
                found.append(
                    Contradiction(
                        f"{name_a}={bind_a}", f"{name_b}={bind_b}", "both listen on one port"
                    )
                )
    return found


def _is_secret(field: FieldInfo) -> bool:
    annotation = field.annotation
    if annotation is SecretStr:
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return SecretStr in typing.get_args(annotation)
    return False


def _shown(value: object) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, list | tuple):
        return ",".join(_shown(v) for v in value) or "(empty)"
    if isinstance(value, Path):
        return str(value)
    text = str(value)
    return text if text else "(empty)"


def env_lines(settings: type[BaseSettings]) -> list[tuple[str, str, str]]:
    """(variable, default as shown, description) for every field, in declaration order.

    A secret's default is `(secret)`; a default made by a factory is what the factory gives
    on this machine (the MC id from the host name)."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    lines = []
    for name, field in settings.model_fields.items():
        if _is_secret(field):
            default = "(secret)"
        elif field.default_factory is not None:
            default = _shown(field.default_factory())  # type: ignore[call-arg]
        elif field.is_required():
            default = "(required)"
        else:
            default = _shown(field.default)
        lines.append((f"{prefix}{name.upper()}", default, field.description or ""))
    return lines


def env_help(settings: type[BaseSettings]) -> str:
    """The environment variables of `settings` as help text, one line each:
    `VARIABLE=default  description`."""
    from rich.markup import escape  # typer renders help as rich markup: `[x]` would vanish

    rows = env_lines(settings)
    width = max(len(f"{name}={default}") for name, default, _ in rows)
    return "\n".join(
        escape(f"{f'{name}={default}':<{width}}  {description}".rstrip())
        for name, default, description in rows
    )


def documented_by(module: str, class_name: str) -> Callable[[F], F]:
    """A command decorator: append the environment variables of the settings class
    `module.class_name` to the command's help (its docstring)."""
    import importlib

    def decorate(command: F) -> F:
        settings = getattr(importlib.import_module(module), class_name)
        intro = (command.__doc__ or "").rstrip()
        command.__doc__ = (
            f"{intro}\n\nEnvironment variables (name=default; a secret's default is not "
            f"shown):\n\n{env_help(settings)}\n"
        )
        return command

    return decorate


def split_paths(value: object) -> object:
    """A `mode="before"` field validator: `"a.pem, b.pem"` → `[Path("a.pem"), Path("b.pem")]`
    (blank items dropped); any other value is left for pydantic to check."""
    if isinstance(value, str):
        return [Path(p.strip()) for p in value.split(",") if p.strip()]
    return value


def split_list(value: object, *, most: int, plural: str) -> list[str]:
    """A comma-separated string (or a list) → its items, stripped, blank ones dropped; None →
    []; ValueError "at most `most` `plural`" when there are more."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    found = [str(item).strip() for item in items if str(item).strip()]
    if len(found) > most:
        raise ValueError(f"at most {most} {plural}")
    return found
