"""MeetingActor and ConnectionActor against a real Redis: fenced out means stop and tell clients."""

from __future__ import annotations

import time

import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from darktower.auth.join_tokens import JoinClaims
from darktower.fencing import FencedOut, RedisFencedStore, StoreUnavailable
from darktower.mc.binding import RedisNonceLedger, SessionBinder
from darktower.mc.connection import ConnectionActor
from darktower.mc.meeting import EndMeeting, JoinRequest, MeetingActor, Touch
from darktower.mc.validation import MhRole, MhTarget
from darktower.signaling.protocol import LeaveReason, ParticipantLeft, parse_server

MHS = (MhTarget("mh-1", "https://mh-1.example", MhRole.PRIMARY),)


class Inbox:
    def __init__(self) -> None:
        self.frames: list[str] = []

    async def __call__(self, frame: str) -> None:
        self.frames.append(frame)


async def hosted(
    store: RedisFencedStore, meeting_id: str, binder: SessionBinder | None = None
) -> MeetingActor:
    lease = await store.acquire(meeting_id, "mc-a")
    actor = MeetingActor(lease, store=store, mhs=MHS, binder=binder)
    actor.start()
    return actor


async def test_fenced_out_meeting_tells_connections_it_moved_and_stops_them(
    redis_client: aioredis.Redis,
) -> None:
    store = RedisFencedStore(redis_client)
    binder = SessionBinder(b"x" * 32, RedisNonceLedger(redis_client))
    meeting = await hosted(store, "room", binder)
    inboxes = [Inbox(), Inbox()]
    connections = [ConnectionActor(f"c{i}", "", box) for i, box in enumerate(inboxes)]
    for i, connection in enumerate(connections):
        claims = JoinClaims("room", f"user-{i}", f"User {i}", "gc-test", int(time.time()) + 60)
        assert await meeting.ask(JoinRequest(claims, connection)) is None
    assert len(meeting.children) == 2
    assert await meeting.ask(Touch()) is None
    before = REGISTRY.get_sample_value("mc_fenced_out_total") or 0.0

    await store.acquire("room", "mc-b")  # taken over
    outcome = await meeting.ask(Touch())

    assert isinstance(outcome, FencedOut) and outcome.stored_owner == "mc-b"
    await meeting.wait(2)
    assert not meeting.running and meeting.end_reason == "fenced_out"
    assert all(not c.running and c.close_reason == "moved" for c in connections)
    # Each client is told last that it left the meeting, for itself, because the meeting
    # moved (after its join answer and, for the first, the second's arrival).
    for connection, box in zip(connections, inboxes, strict=True):
        assert connection.participant_id
        assert parse_server(box.frames[-1]) == ParticipantLeft(
            participant_id=connection.participant_id, reason=LeaveReason.MOVED
        )
        assert [parse_server(f).type for f in box.frames].count("participant_left") == 1
    assert REGISTRY.get_sample_value("mc_fenced_out_total") == before + 1
    # The refused write changed nothing of the new owner's.
    assert await redis_client.hget("meeting:{room}:state", "touched_at_ms") is not None
    assert await redis_client.get("meeting:{room}:owner") == b"mc-b"


async def test_ending_a_meeting_deletes_its_state_but_keeps_the_generation(
    redis_client: aioredis.Redis,
) -> None:
    store = RedisFencedStore(redis_client)
    meeting = await hosted(store, "done")
    generation = await redis_client.get("meeting:{done}:gen")
    assert await meeting.ask(EndMeeting("ended")) is None
    await meeting.wait(2)
    assert meeting.end_reason == "ended" and not meeting.running
    assert await redis_client.get("meeting:{done}:owner") is None
    assert await redis_client.get("meeting:{done}:gen") == generation


async def test_redis_outage_keeps_the_meeting() -> None:
    from darktower.embedded.redis import EmbeddedRedis

    with EmbeddedRedis() as server:
        client = aioredis.Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
        store = RedisFencedStore(client)
        meeting = await hosted(store, "steady")
        server.stop()
        outcome = await meeting.ask(Touch())
        assert isinstance(outcome, StoreUnavailable)
        assert meeting.running and not meeting.lost
        await meeting.stop()
        await client.aclose()
