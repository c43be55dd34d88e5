"""Errors of the GC store, one tree; each carries a stable `code` in lower snake case.

    StoreError                 store_error            base; also an unexpected database error
    ├── UnknownController      unknown_controller     no controller registered under that id
    ├── UnknownMediaHandler    unknown_media_handler  no media handler registered under that id
    ├── ClaimLost              claim_lost             the live assignment is no longer our claim
    └── DatabaseUnavailable    store_unavailable      database unreachable, timed out, locked

Messages never contain the database URL, credentials or SQL text: a database failure is named
only by the class of the underlying exception, which stays reachable as `__cause__`. The
repository raises them `from` the SQLAlchemy / driver exception.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ClaimLost",
    "DatabaseUnavailable",
    "StoreError",
    "UnknownController",
    "UnknownMediaHandler",
]


class StoreError(Exception):
    """Base of every GC store error."""

    code: ClassVar[str] = "store_error"


class UnknownController(StoreError):
    """No meeting controller is registered under `controller_id`."""

    code: ClassVar[str] = "unknown_controller"

    def __init__(self, controller_id: str) -> None:
        super().__init__(f"unknown meeting controller {controller_id!r}")
        self.controller_id = controller_id


class UnknownMediaHandler(StoreError):
    """No media handler is registered under `handler_id`."""

    code: ClassVar[str] = "unknown_media_handler"

    def __init__(self, handler_id: str) -> None:
        super().__init__(f"unknown media handler {handler_id!r}")
        self.handler_id = handler_id


class ClaimLost(StoreError):
    """The live assignment of the meeting is no longer the caller's claim.

    It was taken over as stale, ended, released, or never existed; nothing was written.
    """

    code: ClassVar[str] = "claim_lost"

    def __init__(self, meeting_id: str, region: str, gc_id: str) -> None:
        super().__init__(f"meeting {meeting_id!r} in {region!r}: claim of {gc_id!r} lost")
        self.meeting_id = meeting_id
        self.region = region
        self.gc_id = gc_id


class DatabaseUnavailable(StoreError):
    """The database could not be reached or did not answer; the outcome is unknown."""

    code: ClassVar[str] = "store_unavailable"
