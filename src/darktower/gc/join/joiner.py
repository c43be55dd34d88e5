"""Who joins: the joiner a request names or an access token grants (docs/reference.md).

The GC authenticates end users through access tokens (`darktower.auth.access_tokens`): the
token's `sub`, `name` and `role` make the joiner. A guest (only with `GC_ALLOW_GUESTS=true`)
has a random id, the name it gave and the participant role. Either way the id and the name are
checked by the shared rules (`darktower.common.names`), which refuse what could not be shown
safely; the join token the GC mints carries the result to the MC.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal

from darktower.common.errors import invalid_field_as
from darktower.common.names import USER_ID_PATTERN, normalize_display_name, validate_user_id
from darktower.gc.errors import InvalidGcRequest

__all__ = [
    "DEFAULT_DISPLAY_NAME",
    "USER_ID_PATTERN",
    "Joiner",
    "Role",
    "new_user_id",
    "validate_joiner",
]

DEFAULT_DISPLAY_NAME = "Guest"

Role = Literal["host", "participant"]


@dataclass(frozen=True, slots=True)
class Joiner:
    """Who joins: a user id (stable across reconnects), the name others see, and the role
    granted (`host` only from an access token)."""

    user_id: str
    display_name: str
    role: Role = "participant"


def new_user_id() -> str:
    """A random user id for a joiner who gave none: `u-` and 16 hex digits."""
    return "u-" + secrets.token_hex(8)


def validate_joiner(
    user_id: str | None,
    display_name: str | None,
    *,
    role: Role = "participant",
    name_field: str = "display_name",
) -> Joiner:
    """The joiner, defaults filled in; `InvalidGcRequest` naming the field.

    `user_id`: absent → `new_user_id()`; else the shared user id rule. `display_name`: absent →
    "Guest"; else the shared display name rule (NFC, trimmed, 1 to 100 characters, no control,
    format or invisible characters), refused as `name_field`.
    """
    with invalid_field_as(InvalidGcRequest):
        uid = new_user_id() if user_id is None else validate_user_id(user_id)
        name = (
            DEFAULT_DISPLAY_NAME
            if display_name is None
            else normalize_display_name(display_name, name_field)
        )
    return Joiner(user_id=uid, display_name=name, role=role)
