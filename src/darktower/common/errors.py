"""The error a shared rule raises, and its conversion to a service's own error.

::

    ValueError
    └── InvalidField     a value breaks a shared rule; names the field and the reason

The rules in `darktower.common` know no service, so they raise `InvalidField`; each service
turns it into its own request error, `InvalidGcRequest` or `InvalidMcRequest` (same field, same
reason, hence the same message on the wire), where it validates a request, with
`invalid_field_as`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["InvalidField", "invalid_field_as"]


class InvalidField(ValueError):
    """`field` is missing or malformed; the message is `"<field>: <reason>"`."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@contextmanager
def invalid_field_as(error: Callable[[str, str], Exception]) -> Iterator[None]:
    """Re-raise an `InvalidField` from the block as `error(field, reason)`, chained to it."""
    try:
        yield
    except InvalidField as exc:
        raise error(exc.field, exc.reason) from exc
