"""The host rule as tables: the first participant is host; when the host leaves for good the
connected participant present longest takes over (ties by participant id), else the longest
present of those within their grace; nobody when the roster is empty."""

from __future__ import annotations

import pytest

from darktower.mc.roster import HOST_FIELD, Member, Roster, next_host, participant_field


def member(participant_id: str, joined: int, *, connected: bool = True) -> Member:
    return Member(
        participant_id=participant_id,
        user_id=f"u-{participant_id}",
        display_name=participant_id.title(),
        correlation_id=f"cid-{participant_id}",
        joined_at_ms=joined,
        connected=connected,
        disconnected_at_ms=None if connected else joined + 1,
    )


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        pytest.param([], None, id="empty: nobody"),
        pytest.param([member("a", 10)], "a", id="the only one"),
        pytest.param([member("b", 20), member("a", 10)], "a", id="present longest"),
        pytest.param([member("a", 10), member("b", 20)], "a", id="order given does not matter"),
        pytest.param(
            [member("a", 10, connected=False), member("b", 20)],
            "b",
            id="connected before disconnected, even if it came later",
        ),
        pytest.param(
            [member("a", 10, connected=False), member("b", 20, connected=False)],
            "a",
            id="none connected: the longest present within grace",
        ),
        pytest.param([member("b", 10), member("a", 10)], "a", id="same join time: by id"),
        pytest.param(
            [member("c", 30), member("a", 10, connected=False), member("b", 20)],
            "b",
            id="longest present among the connected",
        ),
    ],
)
def test_next_host(members: list[Member], expected: str | None) -> None:
    assert next_host(members) == expected


def roster_of(*members: Member) -> Roster:
    roster = Roster()
    for m in members:
        roster.add(m)
    return roster


def test_the_first_participant_is_host_and_stays_host_as_others_join() -> None:
    roster = Roster()
    assert roster.host_id is None
    roster.add(member("late-id-but-first", 50))
    assert roster.host_id == "late-id-but-first"
    roster.add(member("a", 10))  # an earlier join time does not take the role
    assert roster.host_id == "late-id-but-first"


@pytest.mark.parametrize(
    ("members", "leaves", "changed", "host_after"),
    [
        pytest.param(["h", "a", "b"], "a", False, "h", id="a guest leaves: host unchanged"),
        pytest.param(["h", "a", "b"], "h", True, "a", id="host leaves: longest present next"),
        pytest.param(["h"], "h", True, None, id="last one leaves: no host"),
        pytest.param(["h", "x"], "nobody", False, "h", id="unknown id: nothing changes"),
    ],
)
def test_removal_hands_the_role_on(
    members: list[str], leaves: str, changed: bool, host_after: str | None
) -> None:
    roster = roster_of(*(member(pid, joined=10 * i) for i, pid in enumerate(members)))
    assert roster.remove(leaves) is changed
    assert roster.host_id == host_after


def test_host_leaving_skips_a_disconnected_guest_who_came_first() -> None:
    roster = roster_of(member("h", 0), member("ghost", 10, connected=False), member("b", 20))
    assert roster.remove("h")
    assert roster.host_id == "b"
    assert roster.remove("b")
    assert roster.host_id == "ghost"  # within its grace, and nobody connected is left


@pytest.mark.parametrize(
    ("stored_host", "expected"),
    [
        pytest.param("b", "b", id="the stored host, though not the longest present"),
        pytest.param("gone", "a", id="a stored host no longer in the roster: the rule picks"),
        pytest.param(None, "a", id="no stored host: the rule picks"),
    ],
)
def test_the_roster_read_from_redis_keeps_or_derives_its_host(
    stored_host: str | None, expected: str
) -> None:
    state = {
        participant_field(m.participant_id): m.to_json() for m in (member("a", 10), member("b", 20))
    }
    if stored_host is not None:
        state[HOST_FIELD] = stored_host
    roster, bad = Roster.from_state(state)
    assert bad == []
    assert roster.host_id == expected
