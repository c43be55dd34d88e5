"""Who joins: the joiner a request names, checked for form only (SPEC §4).

The GC authenticates no end user: the join token only binds the user id and display name it
was given to one meeting for a short while. `validate_joiner` fills in the defaults and refuses
what could not be shown safely.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass

from darktower.common.limits import MAX_DISPLAY_NAME_CHARS
from darktower.gc.errors import InvalidArgument

__all__ = [
    "DEFAULT_DISPLAY_NAME",
    "USER_ID_PATTERN",
    "Joiner",
    "new_user_id",
    "validate_joiner",
]

DEFAULT_DISPLAY_NAME = "Guest"
# ASCII letters, digits and `.`, `_`, `-`, `@` (e-mail-like ids): safe in logs, URLs and
# JSON without escaping, and nothing that could pose as another user's id through Unicode.
USER_ID_PATTERN = r"^[A-Za-z0-9._@-]{1,64}$"
_USER_ID = re.compile(USER_ID_PATTERN)
# Unicode categories refused in display names: control characters, surrogates, line and
# paragraph separators; and the bidirectional overrides and isolates, which would let a name
# reorder the text shown after it on other participants' screens.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@dataclass(frozen=True, slots=True)
class Joiner:
    """Who joins: a user id (stable across reconnects) and the name others see."""

    user_id: str
    display_name: str


def new_user_id() -> str:
    """A random user id for a joiner who gave none: `u-` and 16 hex digits."""
    return "u-" + secrets.token_hex(8)


def validate_joiner(user_id: str | None, display_name: str | None) -> Joiner:
    """The joiner a request names, defaults filled in; `InvalidArgument` naming the field.

    `user_id`: absent → `new_user_id()`; else 1 to 64 of `USER_ID_PATTERN`'s characters.
    `display_name`: absent → "Guest"; else trimmed of surrounding white space, then 1 to 100
    characters, none of them a control character, a surrogate, a line or paragraph separator
    or a bidirectional control.
    """
    if user_id is None:
        user_id = new_user_id()
    elif not _USER_ID.fullmatch(user_id):
        raise InvalidArgument("user_id", "must be 1 to 64 of A-Z a-z 0-9 . _ - @")
    if display_name is None:
        display_name = DEFAULT_DISPLAY_NAME
    else:
        display_name = display_name.strip()
        if not display_name:
            raise InvalidArgument("display_name", "must not be empty")
        if len(display_name) > MAX_DISPLAY_NAME_CHARS:
            raise InvalidArgument(
                "display_name", f"must be at most {MAX_DISPLAY_NAME_CHARS} characters"
            )
        if any(
            unicodedata.category(ch) in _REFUSED_CATEGORIES or ch in _BIDI_CONTROLS
            for ch in display_name
        ):
            raise InvalidArgument("display_name", "must not contain control characters")
    return Joiner(user_id=user_id, display_name=display_name)
