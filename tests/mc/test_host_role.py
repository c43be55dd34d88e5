"""The host role granted by an access token (`roster.host_after_join`, `next_host`): as tables,
then on a real MC over real WebSockets with join tokens carrying `role`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from darktower.auth.join_tokens import mint_join_token
from darktower.auth.keys import load_private_key
from darktower.mc.roster import Member, Roster, host_after_join, next_host
from darktower.signaling.protocol import JoinAnswer, Leave, ParticipantJoined, ParticipantLeft
from tests.mc.signaling_client import SignalingClient, signaling_url
from tests.support.mc import RunningMc


def member(pid: str, role: str = "participant", *, at: int = 0, connected: bool = True) -> Member:
    return Member(
        participant_id=pid,
        user_id=f"u-{pid}",
        display_name=pid,
        correlation_id=f"c-{pid}",
        joined_at_ms=at,
        role=role,
        connected=connected,
    )


@pytest.mark.parametrize(
    ("host", "joiner", "expected"),
    [
        (None, member("a"), "a"),  # the first joiner is host (guests, no role)
        (None, member("a", "host"), "a"),
        (member("g"), member("a"), "g"),  # an ordinary joiner changes nothing
        (member("g"), member("a", "host"), "a"),  # a host-role joiner takes over a stand-in
        (member("h", "host"), member("a", "host"), "h"),  # the first host-role host stays
        (member("h", "host"), member("a"), "h"),
    ],
)
def test_host_after_join(host: Member | None, joiner: Member, expected: str) -> None:
    assert host_after_join(host, joiner) == expected


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ([member("a", at=1), member("b", "host", at=2)], "b"),  # host-role first
        ([member("a", at=1), member("b", "host", at=2, connected=False)], "a"),  # connected first
        ([member("a", "host", at=3), member("b", "host", at=2)], "b"),  # then by presence
        ([member("a", at=1, connected=False), member("b", "host", at=2, connected=False)], "b"),
        ([], None),
    ],
)
def test_next_host_prefers_connected_host_role(members: list[Member], expected: str | None) -> None:
    assert next_host(members) == expected


def test_the_roster_says_who_became_host() -> None:
    roster = Roster()
    assert roster.add(member("g"))  # first: host
    assert not roster.add(member("p"))
    assert roster.add(member("h", "host")) and roster.host_id == "h"
    assert not roster.add(member("h2", "host")) and roster.host_id == "h"
    assert roster.remove("h") and roster.host_id == "h2"


def test_a_stored_member_keeps_its_role_and_old_entries_read_as_participants() -> None:
    stored = member("h", "host")
    assert Member.from_json("h", stored.to_json()).role == "host"
    old = '{"user_id":"u","correlation_id":"c","joined_at_ms":1}'
    assert Member.from_json("x", old).role == "participant"
    with pytest.raises(ValueError, match="role"):
        Member.from_json("x", '{"user_id":"u","correlation_id":"c","joined_at_ms":1,"role":"god"}')


# --- on a real MC --------------------------------------------------------------------------


@pytest.fixture
async def room(
    start_mc: Callable[..., Awaitable[RunningMc]], key_dir: Path
) -> AsyncIterator[Callable[[str, str], Awaitable[tuple[SignalingClient, JoinAnswer]]]]:
    mc = await start_mc()
    assert (await mc.assign("townhall")).accepted
    clients: list[SignalingClient] = []
    key = load_private_key(key_dir / "gc.key")

    async def join(user: str, role: str) -> tuple[SignalingClient, JoinAnswer]:
        token = mint_join_token(
            key,
            meeting_id="townhall",
            user_id=user,
            display_name=user.title(),
            issuer="gc-test",
            role=role,
        )
        client = await SignalingClient.open(signaling_url(mc.app.client_port))
        clients.append(client)
        return client, await client.join(token)

    try:
        yield join
    finally:
        for client in clients:
            await client.close()


async def test_a_host_role_joiner_takes_the_host_over_and_everyone_is_told(
    room: Callable[[str, str], Awaitable[tuple[SignalingClient, JoinAnswer]]],
) -> None:
    guest, first = await room("guest", "participant")
    assert first.host_id == first.participant_id  # first joiner stands in
    _, teacher = await room("teacher", "host")
    assert teacher.host_id == teacher.participant_id
    told = await guest.expect(ParticipantJoined)
    assert told.host_id == teacher.participant_id
    student, third = await room("student", "participant")
    assert third.host_id == teacher.participant_id
    _, second_host = await room("deputy", "host")
    assert second_host.host_id == teacher.participant_id  # the first host-role host stays
    announced = await student.expect(ParticipantJoined)
    assert announced.host_id is None


async def test_when_the_host_leaves_a_host_role_participant_follows(
    room: Callable[[str, str], Awaitable[tuple[SignalingClient, JoinAnswer]]],
) -> None:
    teacher, first = await room("teacher", "host")
    observer, _ = await room("early", "participant")
    _, deputy = await room("deputy", "host")
    await teacher.send(Leave())
    left = await observer.expect(ParticipantLeft, participant_id=first.participant_id)
    assert left.host_id == deputy.participant_id  # not the longer-present participant
