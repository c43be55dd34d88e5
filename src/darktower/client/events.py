"""What a `ClientSession` tells its user: the events of `ClientSession.events()` and the
errors of a join (`session.py` re-exports them all)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from darktower.signaling.protocol import (
    ErrorMsg,
    JoinAnswer,
    Muted,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantUpdated,
)

__all__ = [
    "ClientError",
    "Ended",
    "JoinRefused",
    "Joined",
    "McUnreachable",
    "Reconnecting",
    "Redirected",
    "SessionEvent",
]


class ClientError(Exception):
    """The session cannot go on; the message is fit for a terminal."""


class JoinRefused(ClientError):
    """The GC or the MC refused the join. `code`: the MC's error code, or `http_<status>`;
    `retryable`: another attempt later may succeed (no MC available, meeting unavailable)."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.retryable = retryable


class McUnreachable(JoinRefused):
    """The MC's WebSocket refused or timed out the connection: evidence for the GC."""


@dataclass(frozen=True, slots=True)
class Joined:
    """In the meeting: first join, reconnected (same participant id) or rejoined (a new
    participant: the old session could not be resumed)."""

    kind: Literal["joined", "reconnected", "rejoined"]
    answer: JoinAnswer
    mc_id: str
    signaling_url: str


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """The connection is gone (`why`); attempt number `attempt` follows after `delay_s`."""

    why: str
    attempt: int
    delay_s: float


@dataclass(frozen=True, slots=True)
class Redirected:
    """The MC moved the meeting to another MC (`reason` "migration": it drains); the session
    follows to `signaling_url` by itself (a `Joined(kind="reconnected")` follows)."""

    signaling_url: str
    mc_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Ended:
    """Out of the meeting for good: a LeaveReason value, or "failed" (`detail` says why)."""

    reason: str
    detail: str = ""


SessionEvent = (
    Joined
    | Reconnecting
    | Redirected
    | Ended
    | ParticipantJoined
    | ParticipantLeft
    | ParticipantUpdated
    | Muted
    | ErrorMsg
)
