"""RosterFrames: the join answer's roster encoded once and reused (mc/meeting/roster_frames.py).

Whatever the cache holds, the frames must be the very text the plain encoding gives: the
answer with its whole roster (a v1 client), or its first page and the `roster_delta` pages
(a `roster_delta` client) — also after members changed, left, or the host moved, and with
metadata or names that spell the answer's own JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from darktower.mc.meeting.fanout import roster_pages
from darktower.mc.meeting.roster_frames import RosterFrames
from darktower.mc.roster import Member, Roster
from darktower.signaling.protocol import ROSTER_PAGE, JoinAnswer, encode


def _member(index: int, name: str = "") -> Member:
    return Member(
        participant_id=f"p{index:05d}",
        user_id=f"user-{index}",
        display_name=name or f"Person {index}",
        correlation_id=f"c{index}",
        joined_at_ms=1_000 + index,
    )


def _answer(roster: Roster, joiner: str, metadata: str | None = None) -> JoinAnswer:
    return JoinAnswer(
        participant_id=joiner,
        correlation_id="corr",
        binding_token="token",
        roster=roster.participants(),
        host_id=roster.host_id,
        metadata=metadata,
    )


def _plain(answer: JoinAnswer, *, paged: bool) -> list[str]:
    """What the answer's frames were before the cache (fanout.Connections.answer)."""
    roster = answer.roster
    if not paged or len(roster) <= ROSTER_PAGE:
        return [encode(answer)]
    rest = roster_pages(roster[ROSTER_PAGE:], [], answer.host_id)
    first = answer.model_copy(update={"roster": roster[:ROSTER_PAGE], "roster_pages": len(rest)})
    return [encode(first), *(frame.frame for frame in rest)]


def test_a_join_storm_gets_the_plain_frames_from_the_cache() -> None:
    frames, roster = RosterFrames(), Roster()
    for index in range(ROSTER_PAGE * 2 + 30):
        roster.add(_member(index))
        answer = _answer(roster, f"p{index:05d}")
        for paged in (True, False):
            assert frames.answer(answer, paged=paged) == _plain(answer, paged=paged)


def test_changes_leaves_and_a_new_host_are_never_served_stale() -> None:
    frames, roster = RosterFrames(), Roster()
    for index in range(ROSTER_PAGE + 20):
        roster.add(_member(index))
    first = _answer(roster, "p00000")
    assert frames.answer(first, paged=True) == _plain(first, paged=True)
    steps: list[Callable[[], object]] = [
        lambda: setattr(roster.members["p00003"], "muted", True),  # first page changes
        lambda: setattr(roster.members[f"p{ROSTER_PAGE + 5:05d}"], "connected", False),
        lambda: roster.remove("p00000"),  # the host leaves: pages shift, host moves
        lambda: roster.remove(f"p{ROSTER_PAGE + 1:05d}"),
        lambda: roster.add(_member(9_999)),
        lambda: setattr(roster, "host_id", "p00010"),  # the host alone changes
    ]
    for step in steps:
        step()
        answer = _answer(roster, "p00010")
        for paged in (True, False):
            assert frames.answer(answer, paged=paged) == _plain(answer, paged=paged)


def test_metadata_and_names_that_spell_the_roster_field_stay_strings() -> None:
    """An attacker's name or an application's metadata holding `"roster":[]`."""
    frames, roster = RosterFrames(), Roster()
    trick = '"roster":[]'
    roster.add(_member(0, name=trick))
    roster.add(_member(1, name='x","roster":[],"y":"'))
    for metadata in (trick, '{"roster":[]}', "\\" + trick, None):
        answer = _answer(roster, "p00001", metadata)
        texts = frames.answer(answer, paged=True)
        assert texts == [encode(answer)]
        decoded = json.loads(texts[0])
        assert decoded["metadata"] == metadata
        assert [p["display_name"] for p in decoded["roster"]] == [trick, 'x","roster":[],"y":"']
