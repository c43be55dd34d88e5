"""The join/rejoin decision: what a meeting does with a client's `join`, as a pure function.

`decide_join` looks only at plain data — the join token's user, the reconnect the client
claims (its session's correlation id and how its binding token checked), the roster's entries
and whether the MC has room for one more participant — and answers one of:

    Fresh              a new participant (a new seat: the MC must have room)
    Resume(pid)        the client's session is back: the participant it names, on this connection
    Reclaim(pid)       a fresh join by a user whose entry is disconnected takes that entry back
                       (`roster.seat_to_reclaim`): same participant id and host role, new session
    Refuse(refusal)    the client is told `refusal.code` / `refusal.message`

The rules, in order:

* A join without a reconnect takes back a disconnected seat of the same user if there is one,
  else it is a new participant, refused `at_capacity` when the MC is full.
* A reconnect whose correlation id no session has any more is `session_expired` (the client
  joins again without it); its binding token is not even checked.
* A reconnect whose binding token did not verify for that session's participant, or whose join
  token is another user's, is `invalid_binding` (the metric says why: `binding_reason`).
* Otherwise the session resumes.

`MeetingActor` verifies the binding token (I/O: the nonce ledger) before asking, and carries
out the decision (Redis writes, connections, fan-out).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from darktower.mc.binding import BindingRefusal
from darktower.mc.roster import Member, seat_to_reclaim
from darktower.signaling.protocol import ErrorCode

__all__ = [
    "AT_CAPACITY",
    "BAD_BINDING",
    "NO_CLIENTS",
    "SESSION_EXPIRED",
    "STORE_DOWN",
    "UNAVAILABLE",
    "Fresh",
    "JoinDecision",
    "JoinRefusal",
    "Reclaim",
    "Reconnect",
    "Refuse",
    "Resume",
    "decide_join",
]


@dataclass(frozen=True, slots=True)
class JoinRefusal:
    """A refused join: what the client is told (`code`, `message`) and the metric label
    (`reason`). A value the meeting answers, not an exception (the client's `JoinRefused` is
    the exception a refused client raises)."""

    code: ErrorCode
    message: str
    reason: str


UNAVAILABLE = JoinRefusal(
    ErrorCode.MEETING_UNAVAILABLE,
    "the meeting is not available on this controller",
    "moved",
)
STORE_DOWN = JoinRefusal(
    ErrorCode.MEETING_UNAVAILABLE,
    "the meeting state is unavailable, try again",
    "store",
)
AT_CAPACITY = JoinRefusal(
    ErrorCode.MEETING_UNAVAILABLE, "this controller is at capacity", "at_capacity"
)
NO_CLIENTS = JoinRefusal(
    ErrorCode.MEETING_UNAVAILABLE, "client signaling is not enabled", "disabled"
)
SESSION_EXPIRED = JoinRefusal(
    ErrorCode.SESSION_EXPIRED,
    "the session ended; join again without it",
    "session_expired",
)
BAD_BINDING = JoinRefusal(ErrorCode.INVALID_BINDING, "invalid binding token", "invalid_binding")

# The binding refusal label of a valid token shown with another user's join token.
OTHER_USER = "other_user"


@dataclass(frozen=True, slots=True)
class Reconnect:
    """The session a reconnecting client names and how its binding token checked against that
    session's participant: `refusal` None when it verified — or when it was not checked
    because no session has `correlation_id` (the answer is `session_expired` either way)."""

    correlation_id: str
    refusal: BindingRefusal | None = None


@dataclass(frozen=True, slots=True)
class Fresh:
    """Admit a new participant."""


@dataclass(frozen=True, slots=True)
class Resume:
    """Resume the session of `participant_id` on the joining connection."""

    participant_id: str


@dataclass(frozen=True, slots=True)
class Reclaim:
    """Give the disconnected seat `participant_id` back to its user under a new session."""

    participant_id: str


@dataclass(frozen=True, slots=True)
class Refuse:
    """Refuse the join. `binding_reason` labels `mc_binding_refusals_total` when the binding
    was refused (a `BindingRefusal` value or `other_user`), None otherwise."""

    refusal: JoinRefusal
    binding_reason: str | None = None


JoinDecision = Fresh | Resume | Reclaim | Refuse


def decide_join(
    user_id: str,
    reconnect: Reconnect | None,
    members: Iterable[Member],
    host_id: str | None,
    *,
    has_room: bool,
) -> JoinDecision:
    """What to do with a join by `user_id` (the verified join token's user) into a meeting
    whose roster is `members` with host `host_id`; `reconnect` None for a join without a
    session to resume; `has_room` whether the MC can take one more participant."""
    if reconnect is None:
        ghost = seat_to_reclaim(members, user_id, host_id)
        if ghost is not None:
            return Reclaim(ghost.participant_id)
        return Fresh() if has_room else Refuse(AT_CAPACITY)
    session = next((m for m in members if m.correlation_id == reconnect.correlation_id), None)
    if session is None:
        return Refuse(SESSION_EXPIRED)
    if reconnect.refusal is not None:
        return Refuse(BAD_BINDING, reconnect.refusal.value)
    if session.user_id != user_id:
        return Refuse(BAD_BINDING, OTHER_USER)
    return Resume(session.participant_id)
