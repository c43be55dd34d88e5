"""Errors of the fencing store, one tree; each carries a stable `code` in lower snake case.

    FencingError                  fencing_error        base; also an unexpected script error
    ├── FencedOut                 fenced_out           caller is not the owner at that generation
    ├── MalformedState            malformed_state      a stored value breaks the key contract
    └── StoreUnavailable          store_unavailable    Redis unreachable, timeout, failover
        └── ReplicationTimeout    replication_timeout  WAIT saw too few replicas

FencedOut and MalformedState mean nothing was written. StoreUnavailable means the outcome is
unknown (the command may or may not have run); ReplicationTimeout means the write was applied
on the primary but not confirmed by enough replicas. Messages never contain the Redis URL or
credentials: a StoreUnavailable names only the class of the underlying redis exception, which
stays reachable as `__cause__`.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "FencedOut",
    "FencingError",
    "MalformedState",
    "ReplicationTimeout",
    "StoreUnavailable",
]


class FencingError(Exception):
    """Base of every fencing store error."""

    code: ClassVar[str] = "fencing_error"


class FencedOut(FencingError):
    """The write was refused: the caller is not the owner at the given generation."""

    code: ClassVar[str] = "fenced_out"

    def __init__(
        self, meeting_id: str, stored_generation: int | None, stored_owner: str | None
    ) -> None:
        super().__init__(
            f"meeting {meeting_id}: fenced out "
            f"(stored generation {stored_generation}, stored owner {stored_owner})"
        )
        self.meeting_id = meeting_id
        self.stored_generation = stored_generation
        self.stored_owner = stored_owner


class MalformedState(FencingError):
    """A stored value is not what the key contract says (e.g. gen is not an integer)."""

    code: ClassVar[str] = "malformed_state"

    def __init__(self, meeting_id: str, key: str) -> None:
        super().__init__(f"meeting {meeting_id}: malformed value at {key}")
        self.meeting_id = meeting_id
        self.key = key


class StoreUnavailable(FencingError):
    """Redis could not be reached or did not answer; raised `from` the redis exception."""

    code: ClassVar[str] = "store_unavailable"


class ReplicationTimeout(StoreUnavailable):
    """WAIT returned fewer replica acknowledgements than configured; the write is applied."""

    code: ClassVar[str] = "replication_timeout"

    def __init__(self, meeting_id: str, wanted: int, acknowledged: int, timeout_ms: int) -> None:
        super().__init__(
            f"meeting {meeting_id}: {acknowledged} of {wanted} replicas acknowledged "
            f"within {timeout_ms} ms"
        )
        self.meeting_id = meeting_id
        self.wanted = wanted
        self.acknowledged = acknowledged
        self.timeout_ms = timeout_ms
