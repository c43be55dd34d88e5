"""The admission decision: may this Meeting Controller take one more meeting?

A pure function over a snapshot of the controller's state. The controller actor takes the
snapshot, calls `decide_admission` and acts on the answer one request at a time (docs/reference.md,
"Admission"); nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from darktower.wire.dark_tower import internal_pb2 as pb

__all__ = [
    "DEFAULT_PARTICIPANT_ESTIMATE",
    "AdmissionState",
    "Rejection",
    "decide_admission",
    "rejection_to_proto",
]

DEFAULT_PARTICIPANT_ESTIMATE = 10
"""Participants a new meeting is assumed to bring until it reports its real count."""


class Rejection(StrEnum):
    """Why a meeting was refused. A refusal is an answer (`accepted=false`), not an error."""

    DRAINING = "draining"
    UNHEALTHY = "unhealthy"
    AT_CAPACITY = "at_capacity"


@dataclass(frozen=True, slots=True)
class AdmissionState:
    """What the admission decision looks at.

    `hosted_meetings` counts meetings already running here; `admitting` counts meetings whose
    admission was decided "yes" but is not finished (ownership being taken in Redis, actor
    starting). All counts and limits are non-negative; a negative one raises `ValueError`.
    """

    draining: bool
    ready: bool
    hosted_meetings: int
    admitting: int
    max_meetings: int
    current_participants: int
    max_participants: int
    participant_estimate: int = DEFAULT_PARTICIPANT_ESTIMATE

    def __post_init__(self) -> None:
        for name in (
            "hosted_meetings",
            "admitting",
            "max_meetings",
            "current_participants",
            "max_participants",
            "participant_estimate",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")


def decide_admission(state: AdmissionState) -> Rejection | None:
    """Return why the meeting must be refused, or `None` to admit it.

    Checked in this order, the first match wins:

    1. draining → `DRAINING`;
    2. not ready (Redis unreachable, not registered) → `UNHEALTHY`;
    3. `hosted_meetings + admitting >= max_meetings` → `AT_CAPACITY`;
    4. `current_participants + participant_estimate * (admitting + 1) > max_participants`
       → `AT_CAPACITY`.

    Meetings still being admitted hold their participant estimate as well as their meeting
    slot: otherwise several admissions in flight at once would each see the same headroom and
    together overshoot `max_participants`. A limit of 0 therefore refuses everything with
    `AT_CAPACITY` (once draining and readiness have been checked).
    """
    if state.draining:
        return Rejection.DRAINING
    if not state.ready:
        return Rejection.UNHEALTHY
    if state.hosted_meetings + state.admitting >= state.max_meetings:
        return Rejection.AT_CAPACITY
    reserved = state.participant_estimate * (state.admitting + 1)
    if state.current_participants + reserved > state.max_participants:
        return Rejection.AT_CAPACITY
    return None


_TO_PROTO: dict[Rejection, pb.RejectionReason.ValueType] = {
    Rejection.DRAINING: pb.REJECTION_REASON_DRAINING,
    Rejection.UNHEALTHY: pb.REJECTION_REASON_UNHEALTHY,
    Rejection.AT_CAPACITY: pb.REJECTION_REASON_AT_CAPACITY,
}


def rejection_to_proto(rejection: Rejection) -> pb.RejectionReason.ValueType:
    """The wire `RejectionReason` for `rejection`; never `REJECTION_REASON_UNSPECIFIED`."""
    return _TO_PROTO[rejection]
