"""decide_join, the pure join/rejoin decision: one row per rule (see mc/meeting/join.py)."""

from __future__ import annotations

import pytest

from darktower.mc.binding import BindingRefusal
from darktower.mc.meeting.join import (
    AT_CAPACITY,
    BAD_BINDING,
    SESSION_EXPIRED,
    Fresh,
    JoinDecision,
    Reclaim,
    Reconnect,
    Refuse,
    Resume,
    decide_join,
)
from darktower.mc.roster import Member
from darktower.signaling.protocol import ErrorCode


def member(pid: str, user: str, *, connected: bool = True, joined: int = 0) -> Member:
    return Member(
        participant_id=pid,
        user_id=user,
        display_name=user.title(),
        correlation_id=f"cid-{pid}",
        joined_at_ms=joined,
        connected=connected,
        disconnected_at_ms=None if connected else joined + 1,
    )


ALICE = member("pa", "alice")
ALICE_GONE = member("pa", "alice", connected=False)
ALICE_GONE_LATER = member("pa2", "alice", connected=False, joined=5)
BOB = member("pb", "bob")
BOB_GONE = member("pb", "bob", connected=False)

# id, user, reconnect, roster, host, has_room -> decision
Row = tuple[str, str, Reconnect | None, list[Member], str | None, bool, JoinDecision]

BINDING_ROWS: list[Row] = [
    (f"binding {reason}", "alice", Reconnect("cid-pa", reason), [ALICE_GONE], "pa", True,
     Refuse(BAD_BINDING, reason.value))
    for reason in BindingRefusal
]  # fmt: skip

ROWS: list[Row] = [
    ("first join", "alice", None, [], None, True, Fresh()),
    ("first join, MC full", "alice", None, [], None, False, Refuse(AT_CAPACITY)),
    ("another user joins", "alice", None, [BOB], "pb", True, Fresh()),
    ("another user's seat is not taken", "alice", None, [BOB_GONE], "pb", True, Fresh()),
    ("a second device of a connected user", "alice", None, [ALICE], "pa", True, Fresh()),
    ("returning user takes the seat back", "alice", None, [ALICE_GONE, BOB], "pa", True,
     Reclaim("pa")),
    ("reclaim needs no room", "alice", None, [ALICE_GONE], "pa", False, Reclaim("pa")),
    ("of two seats, the host's", "alice", None, [ALICE_GONE_LATER, ALICE_GONE, BOB], "pa2",
     True, Reclaim("pa2")),
    ("of two seats, the longest present", "alice", None, [ALICE_GONE_LATER, ALICE_GONE, BOB],
     "pb", True, Reclaim("pa")),
    ("session gone", "alice", Reconnect("cid-nobody"), [BOB], "pb", True,
     Refuse(SESSION_EXPIRED)),
    ("session gone, empty roster", "alice", Reconnect("cid-pa"), [], None, True,
     Refuse(SESSION_EXPIRED)),
    ("session resumes", "alice", Reconnect("cid-pa"), [ALICE_GONE, BOB], "pb", True,
     Resume("pa")),
    ("session resumes when the MC is full", "alice", Reconnect("cid-pa"), [ALICE_GONE], "pa",
     False, Resume("pa")),
    ("a connected session is taken over", "alice", Reconnect("cid-pa"), [ALICE], "pa", True,
     Resume("pa")),
    ("the session named, not another seat", "alice", Reconnect("cid-pa2"),
     [ALICE_GONE, ALICE_GONE_LATER], "pa", True, Resume("pa2")),
    ("another user's session", "mallory", Reconnect("cid-pb"), [BOB_GONE], "pb", True,
     Refuse(BAD_BINDING, "other_user")),
]  # fmt: skip
ROWS += BINDING_ROWS


@pytest.mark.parametrize(
    ("user", "reconnect", "roster", "host", "has_room", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in ROWS],
)
def test_decide_join(
    user: str,
    reconnect: Reconnect | None,
    roster: list[Member],
    host: str | None,
    has_room: bool,
    expected: JoinDecision,
) -> None:
    assert decide_join(user, reconnect, roster, host, has_room=has_room) == expected


def test_refusals_carry_the_wire_codes() -> None:
    assert AT_CAPACITY.code is ErrorCode.MEETING_UNAVAILABLE
    assert SESSION_EXPIRED.code is ErrorCode.SESSION_EXPIRED
    assert BAD_BINDING.code is ErrorCode.INVALID_BINDING
    # The refusal names no binding reason: only the metric does.
    assert all(r.value not in BAD_BINDING.message for r in BindingRefusal)


def test_the_decision_does_not_touch_the_roster() -> None:
    roster = [ALICE_GONE, BOB]
    before = [m.to_json() for m in roster]
    decide_join("alice", None, roster, "pa", has_room=True)
    decide_join("alice", Reconnect("cid-pa"), roster, "pa", has_room=True)
    assert [m.to_json() for m in roster] == before
