"""The roster's pure rules: which disconnected entry a returning user takes back."""

from __future__ import annotations

import pytest

from darktower.mc.roster import Member, Roster, seat_to_reclaim


def member(participant_id: str, user_id: str, *, connected: bool, joined: int = 0) -> Member:
    return Member(
        participant_id=participant_id,
        user_id=user_id,
        display_name=user_id.title(),
        correlation_id=f"cid-{participant_id}",
        joined_at_ms=joined,
        connected=connected,
        disconnected_at_ms=None if connected else joined + 1,
    )


ADA_GHOST = member("p-ada", "ada", connected=False, joined=10)
ADA_LIVE = member("p-ada2", "ada", connected=True, joined=20)
ADA_LATER_GHOST = member("p-ada3", "ada", connected=False, joined=30)
ADA_EARLIER_GHOST = member("p-ada0", "ada", connected=False, joined=5)
BO_GHOST = member("p-bo", "bo", connected=False, joined=15)
BO_LIVE = member("p-bo2", "bo", connected=True, joined=16)


@pytest.mark.parametrize(
    ("members", "host", "expected"),
    [
        pytest.param([], None, None, id="empty roster"),
        pytest.param([BO_LIVE], BO_LIVE.participant_id, None, id="no ghost"),
        pytest.param([ADA_GHOST, BO_LIVE], None, "p-ada", id="ghost of the same user"),
        pytest.param([ADA_LIVE, BO_LIVE], None, None, id="connected same user: a second device"),
        pytest.param([BO_GHOST, BO_LIVE], None, None, id="ghost of another user"),
        pytest.param([ADA_GHOST, BO_LIVE], "p-ada", "p-ada", id="ghost was host"),
        pytest.param(
            [ADA_LIVE, ADA_GHOST], "p-ada2", "p-ada", id="one device live, one ghost: the ghost"
        ),
        pytest.param(
            [ADA_EARLIER_GHOST, ADA_LATER_GHOST], "p-ada3", "p-ada3", id="two ghosts: the host's"
        ),
        pytest.param(
            [ADA_LATER_GHOST, ADA_EARLIER_GHOST], "p-bo", "p-ada0", id="two ghosts: the longest"
        ),
    ],
)
def test_seat_to_reclaim(members: list[Member], host: str | None, expected: str | None) -> None:
    seat = seat_to_reclaim(members, "ada", host)
    assert (seat.participant_id if seat is not None else None) == expected


def test_the_roster_asks_with_its_own_host() -> None:
    roster = Roster()
    for m in (ADA_EARLIER_GHOST, BO_LIVE, ADA_LATER_GHOST):
        roster.members[m.participant_id] = m
    roster.host_id = ADA_LATER_GHOST.participant_id
    seat = roster.seat_to_reclaim("ada")
    assert seat is not None and seat.participant_id == ADA_LATER_GHOST.participant_id
    assert roster.seat_to_reclaim("bo") is None
    assert roster.seat_to_reclaim("cy") is None
