"""Client signaling against a real in-process MC: a WebSocket on loopback, a real Redis.

Join tokens are minted with the GC key the MC trusts; the disconnect grace is short (1 s) so
that reconnects within and after it run in a test's time.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from darktower.auth.join_tokens import mint_join_token
from darktower.auth.keys import load_private_key
from darktower.fencing import RedisFencedStore
from darktower.mc.binding import mint_binding_token
from darktower.mc.server import McApp, StartupError
from darktower.signaling.protocol import (
    ErrorCode,
    ErrorMsg,
    HostMute,
    Join,
    JoinAnswer,
    Leave,
    LeaveReason,
    Muted,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantUpdated,
    Ping,
    Pong,
    SelfMute,
)
from tests.mc.signaling_client import SignalingClient, signaling_url
from tests.support.keys import TEST_BINDING_SECRET
from tests.support.mc import RunningMc

GRACE = 1.0
Start = Callable[..., Awaitable[RunningMc]]


@dataclass
class Room:
    """One hosted meeting and the clients a test opened on it (closed at teardown)."""

    mc: RunningMc
    meeting_id: str
    key_dir: Path
    clients: list[SignalingClient] = field(default_factory=list)

    @property
    def url(self) -> str:
        return signaling_url(self.mc.app.client_port)

    def token(self, user: str, *, meeting_id: str | None = None, **kw: Any) -> str:
        return mint_join_token(
            load_private_key(self.key_dir / "gc.key"),
            meeting_id=meeting_id or self.meeting_id,
            user_id=user,
            display_name=kw.pop("display_name", user.title()),
            issuer="gc-test",
            **kw,
        )

    async def open(self, url: str | None = None) -> SignalingClient:
        client = await SignalingClient.open(url or self.url)
        self.clients.append(client)
        return client

    async def join(self, user: str) -> tuple[SignalingClient, JoinAnswer]:
        client = await self.open()
        return client, await client.join(self.token(user))

    async def refused(self, join: Join) -> ErrorMsg:
        """Open, send `join`, expect an error and the socket closed by the MC."""
        client = await self.open()
        await client.send(join)
        error = await client.expect(ErrorMsg)
        await client.wait_closed()
        return error

    @property
    def meeting(self) -> Any:
        return self.mc.app.controller.meetings.get(self.meeting_id)


@pytest.fixture
async def open_room(
    start_mc: Start, key_dir: Path
) -> AsyncIterator[Callable[..., Awaitable[Room]]]:
    rooms: list[Room] = []

    async def make(
        meeting_id: str = "standup", mc: RunningMc | None = None, **settings: Any
    ) -> Room:
        if mc is None:
            settings.setdefault("disconnect_grace_seconds", GRACE)
            mc = await start_mc(**settings)
        assert (await mc.assign(meeting_id)).accepted
        room = Room(mc, meeting_id, key_dir)
        rooms.append(room)
        return room

    try:
        yield make
    finally:
        for room in rooms:
            for client in room.clients:
                await client.close()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels or None) or 0.0


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout}s")


# -- join, leave, end -------------------------------------------------------------------------


async def test_first_join_gets_a_roster_of_itself_as_host(
    open_room: Callable[..., Awaitable[Room]],
) -> None:
    room = await open_room()
    _, answer = await room.join("alice")
    assert answer.host_id == answer.participant_id
    assert [p.participant_id for p in answer.roster] == [answer.participant_id]
    me = answer.roster[0]
    assert (me.user_id, me.display_name, me.connected, me.muted) == ("alice", "Alice", True, False)
    assert uuid.UUID(answer.correlation_id).version == 7
    assert answer.binding_token and not answer.reconnected


async def test_second_participant_is_announced_and_sees_both(
    open_room: Callable[..., Awaitable[Room]],
) -> None:
    room = await open_room()
    alice, first = await room.join("alice")
    _, second = await room.join("bob")
    joined = await alice.expect(ParticipantJoined)
    assert joined.participant.participant_id == second.participant_id
    assert joined.participant.user_id == "bob"
    assert {p.participant_id for p in second.roster} == {
        first.participant_id,
        second.participant_id,
    }
    assert second.host_id == first.participant_id


async def test_leave_tells_the_others_and_closes_the_leaver(
    open_room: Callable[..., Awaitable[Room]], redis_client: aioredis.Redis
) -> None:
    room = await open_room()
    alice, a = await room.join("alice")
    bob, b = await room.join("bob")
    await bob.send(Leave())
    left = await alice.expect(ParticipantLeft)
    assert (left.participant_id, left.reason, left.host_id) == (
        b.participant_id,
        LeaveReason.VOLUNTARY,
        a.participant_id,
    )
    own = await bob.expect(ParticipantLeft)
    assert (own.participant_id, own.reason) == (b.participant_id, LeaveReason.VOLUNTARY)
    await bob.wait_closed()
    state = await redis_client.hgetall("meeting:{standup}:state")
    assert f"p:{b.participant_id}".encode() not in state
    assert f"p:{a.participant_id}".encode() in state


async def test_when_the_host_leaves_the_longest_present_connected_one_takes_over(
    open_room: Callable[..., Awaitable[Room]], redis_client: aioredis.Redis
) -> None:
    room = await open_room()
    host, h = await room.join("host")
    _, b = await room.join("bob")
    carol, c = await room.join("carol")
    await host.send(Leave())
    left = await carol.expect(ParticipantLeft)
    assert left.participant_id == h.participant_id and left.host_id == b.participant_id
    assert await redis_client.hget("meeting:{standup}:state", "host") == b.participant_id.encode()
    # The new host's mutes are enforced now.
    await carol.send(HostMute(participant_id=b.participant_id, muted=True))
    assert (await carol.expect(ErrorMsg)).code is ErrorCode.NOT_HOST
    assert c.participant_id != b.participant_id


async def test_the_last_participant_leaving_ends_the_meeting(
    open_room: Callable[..., Awaitable[Room]], redis_client: aioredis.Redis
) -> None:
    room = await open_room()
    meeting = room.meeting
    alice, _ = await room.join("alice")
    bob, _ = await room.join("bob")
    await bob.send(Leave())
    await alice.expect(ParticipantLeft)
    assert await redis_client.get("meeting:{standup}:owner") is not None
    await alice.send(Leave())
    await alice.wait_closed()
    await meeting.wait(5)
    assert not meeting.running and meeting.end_reason == "last_participant_left"
    assert await redis_client.get("meeting:{standup}:owner") is None
    assert await redis_client.exists("meeting:{standup}:state") == 0
    assert await redis_client.get("meeting:{standup}:gen") is not None
    assert "standup" not in room.mc.app.controller.meetings


# -- disconnect, grace, reconnect -------------------------------------------------------------


async def test_reconnect_within_the_grace_restores_the_session(
    open_room: Callable[..., Awaitable[Room]], redis_client: aioredis.Redis
) -> None:
    room = await open_room()
    alice, a = await room.join("alice")
    bob, b = await room.join("bob")
    await alice.expect(ParticipantJoined)
    await bob.close()  # the socket drops, no leave
    down = await alice.expect(ParticipantUpdated)
    assert down.participant.participant_id == b.participant_id and not down.participant.connected
    stored = json.loads(await redis_client.hget("meeting:{standup}:state", f"p:{b.participant_id}"))
    assert stored["connected"] is False and stored["disconnected_at_ms"] > 0
    assert room.mc.app.controller.capacity().current_participants == 2  # still counted

    again = await room.open()
    answer = await again.join(
        room.token("bob"), correlation_id=b.correlation_id, binding_token=b.binding_token
    )
    assert answer.reconnected
    assert answer.participant_id == b.participant_id
    assert answer.correlation_id == b.correlation_id
    assert answer.binding_token != b.binding_token
    up = await alice.expect(ParticipantUpdated)
    assert up.participant.participant_id == b.participant_id and up.participant.connected
    # Past the grace period the participant is still there: its timer was cancelled.
    await asyncio.sleep(GRACE + 0.3)
    assert room.meeting.roster.get(b.participant_id).connected
    await again.send(Ping(nonce="n1"))
    assert (await again.expect(Pong)).nonce == "n1"
    assert not any(isinstance(m, ParticipantLeft) for m in alice.history)
    assert a.participant_id != b.participant_id


async def test_each_pong_renews_the_binding_token_for_long_sessions(
    open_room: Callable[..., Awaitable[Room]],
) -> None:
    room = await open_room()
    bob, b = await room.join("bob")
    await bob.send(Ping(nonce="keepalive"))
    pong = await bob.expect(Pong)
    assert pong.nonce == "keepalive"
    assert pong.binding_token is not None and pong.binding_token != b.binding_token
    await bob.close()
    # The renewed token resumes the session (a client keeps the latest one it was given).
    again = await room.open()
    answer = await again.join(
        room.token("bob"), correlation_id=b.correlation_id, binding_token=pong.binding_token
    )
    assert answer.reconnected and answer.participant_id == b.participant_id


async def test_reconnect_after_the_grace_is_session_expired(
    open_room: Callable[..., Awaitable[Room]], redis_client: aioredis.Redis
) -> None:
    room = await open_room()
    alice, _ = await room.join("alice")
    bob, b = await room.join("bob")
    await bob.close()
    left = await alice.expect(ParticipantLeft, timeout=GRACE + 5)
    assert (left.participant_id, left.reason) == (b.participant_id, LeaveReason.TIMEOUT)
    assert await redis_client.hget("meeting:{standup}:state", f"p:{b.participant_id}") is None
    error = await room.refused(
        Join(
            token=room.token("bob"), correlation_id=b.correlation_id, binding_token=b.binding_token
        )
    )
    assert error.code is ErrorCode.SESSION_EXPIRED


async def test_a_disconnected_last_participant_ends_the_meeting_after_the_grace(
    open_room: Callable[..., Awaitable[Room]], redis_client: aioredis.Redis
) -> None:
    room = await open_room()
    meeting = room.meeting
    alice, _ = await room.join("alice")
    await alice.close()
    await meeting.wait(GRACE + 5)
    assert meeting.end_reason == "last_participant_left"
    assert await redis_client.get("meeting:{standup}:owner") is None


# -- a returning user takes its disconnected seat back -----------------------------------------


def expired_binding(room: Room, answer: JoinAnswer) -> str:
    """A binding token of `answer`'s session issued long enough ago to be past its life."""
    return mint_binding_token(
        TEST_BINDING_SECRET.encode(),
        meeting_id=room.meeting_id,
        correlation_id=answer.correlation_id,
        participant_id=answer.participant_id,
        now=time.time() - 36,
    )


async def roster_in_redis(redis_client: aioredis.Redis) -> tuple[str | None, dict[str, Any]]:
    """The host field and the participant entries (id → JSON) of the meeting's state hash."""
    state = {
        k.decode(): v.decode()
        for k, v in (await redis_client.hgetall("meeting:{standup}:state")).items()
    }
    entries = {k[2:]: json.loads(v) for k, v in state.items() if k.startswith("p:")}
    return state.get("host"), entries


async def test_a_rejoin_after_the_binding_expired_takes_the_hosts_seat_back(
    open_room: Callable[..., Awaitable[Room]], redis_client: aioredis.Redis
) -> None:
    room = await open_room()
    alice, a = await room.join("alice")
    bob, _ = await room.join("bob")
    carol, c = await room.join("carol")
    await alice.close()  # the host drops, no leave
    gone = await bob.expect(ParticipantUpdated)
    assert gone.participant.participant_id == a.participant_id and not gone.participant.connected
    # Carol drops after Alice: her grace ends after Alice's would, which the test waits for.
    await carol.close()
    await bob.expect(ParticipantUpdated)

    # Alice's client tries to resume; its binding token has expired meanwhile.
    error = await room.refused(
        Join(
            token=room.token("alice"),
            correlation_id=a.correlation_id,
            binding_token=expired_binding(room, a),
        )
    )
    assert error.code is ErrorCode.INVALID_BINDING
    # So it joins afresh, with a join token for the same user: its seat, not a second one.
    back = await room.open()
    answer = await back.join(room.token("alice", display_name="Alice Again"))
    assert answer.reconnected
    assert answer.participant_id == a.participant_id
    assert answer.host_id == a.participant_id  # the host role followed the person
    assert answer.correlation_id != a.correlation_id  # a new session
    assert sorted(p.user_id for p in answer.roster) == ["alice", "bob", "carol"]
    up = await bob.expect(ParticipantUpdated)
    assert up.participant.participant_id == a.participant_id and up.participant.connected
    assert up.participant.display_name == "Alice Again"
    assert room.mc.app.controller.capacity().current_participants == 3

    # Past Alice's old grace (Carol's, which began later, runs out): Alice is still there.
    timeout = await bob.expect(ParticipantLeft, timeout=GRACE + 5)
    assert (timeout.participant_id, timeout.reason) == (c.participant_id, LeaveReason.TIMEOUT)
    await back.expect(ParticipantLeft, participant_id=c.participant_id)
    for client in (bob, back):
        departures = [m.participant_id for m in client.history if isinstance(m, ParticipantLeft)]
        assert departures == [c.participant_id]
    host, entries = await roster_in_redis(redis_client)
    assert host == a.participant_id
    assert sorted(e["user_id"] for e in entries.values()) == ["alice", "bob"]
    assert entries[a.participant_id]["connected"] is True
    assert entries[a.participant_id]["correlation_id"] == answer.correlation_id

    # The old session's binding tokens resume nothing now, even a fresh one.
    error = await room.refused(
        Join(
            token=room.token("alice"),
            correlation_id=a.correlation_id,
            binding_token=a.binding_token,
        )
    )
    assert error.code is ErrorCode.SESSION_EXPIRED
    await back.send(Ping(nonce="still-here"))
    assert (await back.expect(Pong)).nonce == "still-here"


async def test_a_second_live_session_of_a_user_is_a_second_participant(
    open_room: Callable[..., Awaitable[Room]], redis_client: aioredis.Redis
) -> None:
    room = await open_room()
    laptop, first = await room.join("alice")
    _, second = await room.join("alice")  # a phone, while the laptop is connected
    assert not second.reconnected
    assert second.participant_id != first.participant_id
    assert second.host_id == first.participant_id
    joined = await laptop.expect(ParticipantJoined)
    assert joined.participant.participant_id == second.participant_id
    _, entries = await roster_in_redis(redis_client)
    assert set(entries) == {first.participant_id, second.participant_id}
    assert all(e["connected"] for e in entries.values())


async def test_a_rejoin_after_a_failover_takes_back_the_carried_over_seat(
    open_room: Callable[..., Awaitable[Room]], start_mc: Start, redis_client: aioredis.Redis
) -> None:
    old = await open_room(id="mc-old", meeting_touch_seconds=0.2)
    alice, a = await old.join("alice")
    bob, b = await old.join("bob")
    new_mc = await start_mc(id="mc-new", disconnect_grace_seconds=GRACE)
    new = await open_room(mc=new_mc)
    for client in (alice, bob):
        assert (await client.expect(ParticipantLeft, timeout=5)).reason is LeaveReason.MOVED
    await wait_for(lambda: new.meeting is not None and len(new.meeting.roster) == 2)
    # Carried over as disconnected: fresh joins of both users (no session to resume) take
    # their seats back on the new MC; the host stays the host.
    bob_back, bob_answer = await new.join("bob")
    alice_back, alice_answer = await new.join("alice")
    assert (bob_answer.participant_id, alice_answer.participant_id) == (
        b.participant_id,
        a.participant_id,
    )
    assert bob_answer.reconnected and alice_answer.reconnected
    assert alice_answer.host_id == a.participant_id
    assert all(p.connected for p in alice_answer.roster) and len(alice_answer.roster) == 2
    # Past the carried-over grace, nobody has left.
    carol, c = await new.join("carol")
    await carol.close()
    left = await bob_back.expect(ParticipantLeft, timeout=GRACE + 5)
    assert (left.participant_id, left.reason) == (c.participant_id, LeaveReason.TIMEOUT)
    await alice_back.expect(ParticipantLeft, participant_id=c.participant_id)
    for client in (alice_back, bob_back):
        departures = [m.participant_id for m in client.history if isinstance(m, ParticipantLeft)]
        assert departures == [c.participant_id]
    host, entries = await roster_in_redis(redis_client)
    assert host == a.participant_id
    assert set(entries) == {a.participant_id, b.participant_id}
    assert new_mc.app.controller.capacity().current_participants == 2


async def disconnected(room: Room) -> tuple[SignalingClient, JoinAnswer]:
    """alice stays; bob joins and drops; returns alice and bob's answer."""
    alice, _ = await room.join("alice")
    bob, b = await room.join("bob")
    await bob.close()
    await alice.expect(ParticipantUpdated)
    return alice, b


def flip(token: str) -> str:
    data = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    data[30] ^= 0x01
    return base64.urlsafe_b64encode(bytes(data)).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("forged", "forged"),
        ("expired", "expired"),
        ("other_user", "other_user"),
        ("garbage", "malformed"),
    ],
)
async def test_a_bad_binding_token_is_invalid_binding(
    open_room: Callable[..., Awaitable[Room]], case: str, reason: str
) -> None:
    room = await open_room()
    _, b = await disconnected(room)
    user, binding_token = "bob", b.binding_token
    if case == "forged":
        binding_token = flip(b.binding_token)
    elif case == "expired":
        binding_token = mint_binding_token(
            TEST_BINDING_SECRET.encode(),
            meeting_id=room.meeting_id,
            correlation_id=b.correlation_id,
            participant_id=b.participant_id,
            now=time.time() - 36,
        )
    elif case == "other_user":
        user = "mallory"
    else:
        binding_token = "garbage"
    before = sample("mc_binding_refusals_total", reason=reason)
    error = await room.refused(
        Join(token=room.token(user), correlation_id=b.correlation_id, binding_token=binding_token)
    )
    assert error.code is ErrorCode.INVALID_BINDING
    assert error.message == "invalid binding token"  # one message whatever the reason
    assert sample("mc_binding_refusals_total", reason=reason) == before + 1
    assert TEST_BINDING_SECRET not in error.message


async def test_a_replayed_binding_token_is_invalid_binding(
    open_room: Callable[..., Awaitable[Room]],
) -> None:
    room = await open_room()
    alice, b = await disconnected(room)
    join = Join(
        token=room.token("bob"), correlation_id=b.correlation_id, binding_token=b.binding_token
    )
    first = await room.open()
    await first.send(join)
    assert (await first.expect(JoinAnswer)).reconnected
    await alice.expect(ParticipantUpdated)  # bob back
    await first.close()
    await alice.expect(ParticipantUpdated)  # bob gone again, within the grace
    before = sample("mc_binding_refusals_total", reason="replayed")
    # The same binding token a second time, with a fresh join token (a join token is single-use).
    error = await room.refused(join.model_copy(update={"token": room.token("bob")}))
    assert error.code is ErrorCode.INVALID_BINDING
    assert sample("mc_binding_refusals_total", reason="replayed") == before + 1


async def test_a_reconnect_replaces_a_connection_that_is_still_open(
    open_room: Callable[..., Awaitable[Room]],
) -> None:
    room = await open_room()
    bob, b = await room.join("bob")
    again = await room.open()
    answer = await again.join(
        room.token("bob"), correlation_id=b.correlation_id, binding_token=b.binding_token
    )
    assert answer.participant_id == b.participant_id and answer.reconnected
    await bob.wait_closed()  # the old socket is hung up
    await again.send(Ping())
    await again.expect(Pong)
    assert room.meeting.roster.get(b.participant_id).connected


# -- join refusals ------------------------------------------------------------------------


async def test_join_refusals(open_room: Callable[..., Awaitable[Room]]) -> None:
    room = await open_room()
    cases = [
        (Join(token=room.token("bob", meeting_id="other"), meeting_id="standup"), "wrong_meeting"),
        (Join(token=room.token("bob", ttl_seconds=1, now=time.time() - 600)), "invalid_join_token"),
        (Join(token="not.a.jwt"), "invalid_join_token"),
        (Join(token=room.token("bob", meeting_id="nowhere")), "meeting_unavailable"),
        (Join(token=room.token("bob"), correlation_id="c-only"), "bad_message"),
        (
            Join(token=room.token("bob"), correlation_id=str(uuid.uuid4()), binding_token="x" * 75),
            "session_expired",
        ),
    ]
    for join, code in cases:
        before = sample("mc_join_refusals_total", reason=code)
        error = await room.refused(join)
        assert error.code == code, (join, error)
        if code in ("wrong_meeting", "invalid_join_token", "session_expired"):
            assert sample("mc_join_refusals_total", reason=code) == before + 1


async def test_a_join_token_signed_by_an_untrusted_key_is_refused(
    open_room: Callable[..., Awaitable[Room]],
) -> None:
    room = await open_room()
    token = mint_join_token(
        load_private_key(room.key_dir / "mc.key"),  # not a GC key
        meeting_id="standup",
        user_id="eve",
        display_name="Eve",
        issuer="eve",
    )
    assert (await room.refused(Join(token=token))).code is ErrorCode.INVALID_JOIN_TOKEN


async def test_new_joins_are_refused_at_the_participant_limit(
    open_room: Callable[..., Awaitable[Room]],
) -> None:
    room = await open_room(max_participants=2, participant_estimate=0)
    alice, a = await room.join("alice")
    bob, b = await room.join("bob")
    error = await room.refused(Join(token=room.token("carol")))
    assert error.code is ErrorCode.MEETING_UNAVAILABLE and "capacity" in error.message
    # A reconnect is no new participant: it still gets in.
    await bob.close()
    await alice.expect(ParticipantUpdated)
    again = await room.open()
    answer = await again.join(
        room.token("bob"), correlation_id=b.correlation_id, binding_token=b.binding_token
    )
    assert answer.reconnected and a.participant_id != answer.participant_id


# -- frames ---------------------------------------------------------------------------------


async def test_frames_before_join_and_malformed_frames_keep_the_socket(
    open_room: Callable[..., Awaitable[Room]],
) -> None:
    room = await open_room()
    client = await room.open()
    await client.send(Ping())
    assert (await client.expect(ErrorMsg)).code is ErrorCode.NOT_JOINED
    await client.send("{not json")
    assert (await client.expect(ErrorMsg)).code is ErrorCode.BAD_MESSAGE
    answer = await client.join(room.token("alice"))
    for frame in ("[]", {"v": 1, "type": "dance"}, {"v": 1, "type": "self_mute"}, "\x00"):
        await client.send(frame)
        assert (await client.expect(ErrorMsg)).code is ErrorCode.BAD_MESSAGE
    await client.send(Join(token=room.token("alice")))
    assert (await client.expect(ErrorMsg)).code is ErrorCode.BAD_MESSAGE  # already joined
    await client.send(SelfMute(muted=True))
    updated = await client.expect(ParticipantUpdated)
    assert updated.participant.participant_id == answer.participant_id and updated.participant.muted
    assert not client.closed


@pytest.mark.parametrize("joined", [False, True])
async def test_another_protocol_version_is_refused_and_closes(
    open_room: Callable[..., Awaitable[Room]], joined: bool
) -> None:
    room = await open_room()
    client = await room.open()
    if joined:
        await client.join(room.token("alice"))
    await client.send({"v": 2, "type": "ping"})
    assert (await client.expect(ErrorMsg)).code is ErrorCode.UNSUPPORTED_VERSION
    await client.wait_closed()


async def test_only_the_signaling_path_is_served(open_room: Callable[..., Awaitable[Room]]) -> None:
    room = await open_room()
    with pytest.raises(InvalidStatus) as caught:
        async with connect(room.url.replace("/v1/signaling", "/other"), proxy=None):
            pass
    assert caught.value.response.status_code == 404


async def test_a_frame_over_the_limit_closes_the_socket(
    open_room: Callable[..., Awaitable[Room]],
) -> None:
    room = await open_room()
    client = await room.open()
    await client.send({"v": 1, "type": "join", "token": "x" * 17_000})
    await client.wait_closed()
    assert client.ws.close_code == 1009


# -- mute ---------------------------------------------------------------------------------


async def test_host_mute_by_a_non_host_is_refused(
    open_room: Callable[..., Awaitable[Room]],
) -> None:
    room = await open_room()
    alice, a = await room.join("alice")
    bob, _ = await room.join("bob")
    await bob.send(HostMute(participant_id=a.participant_id, muted=True))
    assert (await bob.expect(ErrorMsg)).code is ErrorCode.NOT_HOST
    assert not room.meeting.roster.get(a.participant_id).host_muted
    await bob.send(Ping())
    await bob.expect(Pong)  # still connected
    assert not any(isinstance(m, Muted) for m in alice.history)


async def test_host_mute_by_the_host_is_enforced_and_announced(
    open_room: Callable[..., Awaitable[Room]], redis_client: aioredis.Redis
) -> None:
    room = await open_room()
    alice, a = await room.join("alice")
    bob, b = await room.join("bob")
    carol, _ = await room.join("carol")
    await alice.send(HostMute(participant_id=b.participant_id, muted=True))
    muted = await bob.expect(Muted)
    assert (muted.participant_id, muted.muted, muted.by) == (
        b.participant_id,
        True,
        a.participant_id,
    )
    for client in (alice, bob, carol):
        updated = await client.expect(ParticipantUpdated)
        assert updated.participant.participant_id == b.participant_id
        assert updated.participant.host_muted
    stored = json.loads(await redis_client.hget("meeting:{standup}:state", f"p:{b.participant_id}"))
    assert stored["host_muted"] is True
    await alice.send(HostMute(participant_id="nobody", muted=True))
    assert (await alice.expect(ErrorMsg)).code is ErrorCode.UNKNOWN_PARTICIPANT


# -- fencing, failover, counts ------------------------------------------------------------


async def test_a_fenced_out_meeting_tells_every_client_it_moved(
    open_room: Callable[..., Awaitable[Room]], redis_client: aioredis.Redis
) -> None:
    room = await open_room(meeting_touch_seconds=0.2)
    joined = [await room.join(user) for user in ("alice", "bob", "carol")]
    await RedisFencedStore(redis_client).acquire("standup", "mc-elsewhere")
    for client, answer in joined:
        left = await client.expect(ParticipantLeft, timeout=5)
        assert (left.participant_id, left.reason) == (answer.participant_id, LeaveReason.MOVED)
        await client.wait_closed()
    await wait_for(lambda: "standup" not in room.mc.app.controller.meetings)


async def test_failover_carries_the_participants_to_the_new_mc(
    open_room: Callable[..., Awaitable[Room]], start_mc: Start, redis_client: aioredis.Redis
) -> None:
    old = await open_room(id="mc-old", meeting_touch_seconds=0.2)
    alice, a = await old.join("alice")
    bob, b = await old.join("bob")
    new_mc = await start_mc(id="mc-new", disconnect_grace_seconds=5)
    new = await open_room(mc=new_mc)  # the GC placed the meeting anew: mc-new acquires it
    for client in (alice, bob):
        assert (await client.expect(ParticipantLeft, timeout=5)).reason is LeaveReason.MOVED
    # The new owner loaded the roster: both there, disconnected, host kept.
    await wait_for(lambda: new.meeting is not None and len(new.meeting.roster) == 2)
    carried = new.meeting.roster
    assert carried.host_id == a.participant_id
    assert not any(m.connected for m in carried.members.values())
    assert new_mc.app.controller.capacity().current_participants == 2
    # Both reconnect to the new MC with the binding tokens the old one gave them.
    back = await new.open()
    answer = await back.join(
        new.token("bob"), correlation_id=b.correlation_id, binding_token=b.binding_token
    )
    assert answer.reconnected and answer.participant_id == b.participant_id
    assert answer.host_id == a.participant_id
    stored = json.loads(await redis_client.hget("meeting:{standup}:state", f"p:{b.participant_id}"))
    assert stored["connected"] is True
    assert await redis_client.get("meeting:{standup}:owner") == b"mc-new"


async def test_counts_and_the_roster_in_redis(
    open_room: Callable[..., Awaitable[Room]], redis_client: aioredis.Redis
) -> None:
    room = await open_room()
    answers = [(await room.join(user))[1] for user in ("alice", "bob", "carol")]
    capacity = room.mc.app.controller.capacity()
    assert capacity.current_participants == 3 and capacity.current_meetings == 1
    assert sample("mc_participants_active") == 3
    assert sample("mc_signaling_connections") >= 3
    state = {
        k.decode(): v.decode()
        for k, v in (await redis_client.hgetall("meeting:{standup}:state")).items()
    }
    assert state["host"] == answers[0].participant_id
    roster = {k[2:]: json.loads(v) for k, v in state.items() if k.startswith("p:")}
    assert set(roster) == {a.participant_id for a in answers}
    for answer, user in zip(answers, ("alice", "bob", "carol"), strict=True):
        entry = roster[answer.participant_id]
        assert entry["user_id"] == user and entry["display_name"] == user.title()
        assert entry["correlation_id"] == answer.correlation_id
        assert entry["connected"] is True and entry["disconnected_at_ms"] is None
        assert entry["muted"] is False and entry["host_muted"] is False
        assert entry["joined_at_ms"] > 0


# -- the app ------------------------------------------------------------------------------


async def test_serving_clients_needs_the_binding_secret(mc_settings: Callable[..., Any]) -> None:
    with pytest.raises(StartupError, match="MC_BINDING_TOKEN_SECRET"):
        McApp(mc_settings(binding_token_secret=None))
    with pytest.raises(StartupError, match="at least 16") as caught:
        McApp(mc_settings(binding_token_secret="short-secret"))
    assert "short-secret" not in str(caught.value)
    app = McApp(mc_settings(binding_token_secret=None, client_enabled=False))
    assert app.signaling is None and app.client_endpoint == ""
    await app.redis.aclose()


async def test_the_client_endpoint_is_advertised(start_mc: Start) -> None:
    mc = await start_mc(client_bind="0.0.0.0:0")
    endpoint = mc.app.client_endpoint
    assert endpoint.startswith("http://") and "0.0.0.0" not in endpoint
    assert endpoint.endswith(f":{mc.app.client_port}") and mc.app.client_port > 0
    other = await start_mc(client_advertise="https://mc.example:443")
    assert other.app.client_endpoint == "https://mc.example:443"
