"""Limits both ends of a message agree on; one number each, used by the sender and the checker."""

from __future__ import annotations

__all__ = ["MAX_DISPLAY_NAME_CHARS", "MAX_MEETING_LOADS"]

MAX_DISPLAY_NAME_CHARS = 100
"""The longest display name: the GC refuses a longer one, a join token never carries more."""

MAX_MEETING_LOADS = 10_000
"""The most per-meeting entries one comprehensive heartbeat may carry: the GC refuses more, the
MC sends its busiest meetings up to this many."""
