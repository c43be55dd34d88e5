"""The current time, in the two forms the services use: an aware UTC `datetime` (the GC's rows
and placement decisions) and epoch milliseconds (the MC's Redis values and wire timestamps).

Code that a test drives through time takes a `Clock` argument defaulting to `utcnow`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Clock", "now_ms", "utcnow"]

Clock = Callable[[], datetime]
"""A source of aware UTC datetimes; `utcnow` in production."""


def utcnow() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(UTC)


def now_ms() -> int:
    """Now, as whole milliseconds since the Unix epoch."""
    return int(time.time() * 1000)
