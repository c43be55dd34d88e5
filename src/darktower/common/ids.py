"""The id rule: meeting, MC, MH and GC ids are 1 to 255 UTF-8 bytes of ASCII letters, digits,
`-` and `_`.

Ids end up in Redis keys (inside hash tags, where a brace would move the key to another
slot), SQL rows, URLs and logs, so the alphabet is small on purpose. An id one service
accepts is accepted by every other: they all check it here.
"""

from __future__ import annotations

import re
import socket

from darktower.common.errors import InvalidField

__all__ = [
    "ID_FIELD_PATTERN",
    "ID_PATTERN",
    "MAX_ID_BYTES",
    "check_bytes",
    "default_id",
    "validate_id",
]

MAX_ID_BYTES = 255
_ID_CHARS = "A-Za-z0-9_-"
ID_PATTERN = re.compile(rf"[{_ID_CHARS}]{{1,{MAX_ID_BYTES}}}")
"""Used with `fullmatch`. Never allows braces: ids go into Redis hash tags."""
ID_FIELD_PATTERN = rf"^{ID_PATTERN.pattern}$"
"""The same rule as an anchored pattern, for a settings field (`pydantic.Field(pattern=…)`)."""
_BAD_CHARS = "must be letters, digits, '-' or '_'"
_NOT_ID_CHAR = re.compile(rf"[^{_ID_CHARS}]")


def check_bytes(value: str, field: str, limit: int = MAX_ID_BYTES) -> None:
    """Raise `InvalidField` when `value` is longer than `limit` bytes in UTF-8."""
    if len(value.encode("utf-8")) > limit:
        raise InvalidField(field, f"must be at most {limit} bytes")


def validate_id(value: str, field: str) -> str:
    """`value` if it is an id by the rule above; else `InvalidField` for `field`, checked in
    this order: `required`, `must be at most 255 bytes`, `must be letters, digits, '-' or '_'`."""
    if not value:
        raise InvalidField(field, "required")
    check_bytes(value, field)
    if ID_PATTERN.fullmatch(value) is None:
        raise InvalidField(field, _BAD_CHARS)
    return value


def default_id(prefix: str) -> str:
    """`<prefix>-<hostname>`, the hostname's characters outside the id alphabet replaced by
    `-` and cut to 200 characters: the id a service takes when none is configured."""
    return f"{prefix}-" + _NOT_ID_CHAR.sub("-", socket.gethostname())[:200]
