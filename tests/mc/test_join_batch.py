"""Joins queued together in a MeetingActor's mailbox: their new seats are recorded by one
fenced write (`mc/meeting/seats.py`), each join is still answered on its own, admission stays
exact, and a write that fails or is fenced out takes every seat of the batch back."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Mapping

import pytest
import redis.asyncio as aioredis

from darktower.auth.join_tokens import JoinClaims
from darktower.fencing import FencedOut, Lease, RedisFencedStore, StoreUnavailable
from darktower.mc.binding import RedisNonceLedger, SessionBinder
from darktower.mc.connection import ConnectionActor
from darktower.mc.meeting import ConnectionLost, JoinRefusal, JoinRequest, MeetingActor
from darktower.mc.meeting.join import AT_CAPACITY, STORE_DOWN, UNAVAILABLE
from darktower.mc.meeting.limits import MEETING_FULL, MeetingLimits
from darktower.mc.validation import MhRole, MhTarget
from darktower.signaling.protocol import JoinAnswer, ParticipantJoined, parse_server
from darktower.webhooks.keys import partition_of, stream_key
from darktower.webhooks.outbox import EventOutbox
from tests.support.waiting import eventually

MHS = (MhTarget("mh-1", "https://mh-1.example", MhRole.PRIMARY),)


class CountingStore(RedisFencedStore):
    """Counts fenced_hset calls; `fail` is raised by the next one (once)."""

    def __init__(self, client: aioredis.Redis) -> None:
        super().__init__(client)
        self.hsets = 0
        self.fail: Exception | None = None

    async def fenced_hset(
        self, lease: Lease, mapping: Mapping[str, str], *, remove: Iterable[str] = ()
    ) -> None:
        self.hsets += 1
        if self.fail is not None:
            fail, self.fail = self.fail, None
            raise fail
        await super().fenced_hset(lease, mapping, remove=remove)


class Client:
    def __init__(self, user: str, meeting_id: str) -> None:
        self.frames: list[str] = []
        self.user = user
        self.connection = ConnectionActor(f"c-{user}", "", self._receive)
        self.request = JoinRequest(
            JoinClaims(meeting_id, user, f"User {user}", "gc-test", int(time.time()) + 60),
            self.connection,
        )

    async def _receive(self, frame: str) -> None:
        self.frames.append(frame)

    def messages(self) -> list[object]:
        return [parse_server(f) for f in self.frames]


async def hosted(
    store: RedisFencedStore,
    redis_client: aioredis.Redis,
    meeting_id: str,
    counted: list[int] | None = None,
    **options: object,
) -> MeetingActor:
    """A started meeting; `counted[0]` follows its roster size (the controller's totals)."""
    lease = await store.acquire(meeting_id, "mc-a")
    binder = SessionBinder(b"x" * 32, RedisNonceLedger(redis_client))

    def on_participants(_meeting: MeetingActor, delta: int) -> None:
        if counted is not None:
            counted[0] += delta

    meeting = MeetingActor(
        lease,
        store=store,
        mhs=MHS,
        binder=binder,
        on_participants=on_participants,
        **options,
    )
    meeting.start()
    await meeting.started.wait()
    return meeting


async def storm(meeting: MeetingActor, clients: list[Client]) -> list[object]:
    """Every client's join queued before the meeting takes the first."""
    return list(await asyncio.gather(*(meeting.ask(c.request) for c in clients)))


async def test_queued_joins_cost_one_write_and_each_is_answered(
    redis_client: aioredis.Redis,
) -> None:
    store = CountingStore(redis_client)
    meeting = await hosted(store, redis_client, "storm")
    clients = [Client(f"u{i}", "storm") for i in range(20)]
    before = store.hsets

    assert await storm(meeting, clients) == [None] * 20

    assert store.hsets - before == 1
    state = await redis_client.hgetall("meeting:{storm}:state")
    ids = {c.connection.participant_id for c in clients}
    assert len(ids) == 20 and {f"p:{p}".encode() for p in ids} <= set(state)
    assert state[b"host"] == clients[0].connection.participant_id.encode()
    # Each client's answer has the whole batch, so no client is told of the others again.
    await eventually(lambda: all(c.frames for c in clients), timeout=5, what="join answers")
    for client in clients:
        answer = client.messages()[0]
        assert isinstance(answer, JoinAnswer)
        assert answer.participant_id == client.connection.participant_id
        assert {p.participant_id for p in answer.roster} == ids
    late = Client("late", "storm")
    assert await meeting.ask(late.request) is None
    await eventually(
        lambda: all(len(c.frames) == 2 for c in clients), timeout=5, what="the late joiner told"
    )
    for client in clients:
        assert client.messages() == [
            client.messages()[0],
            ParticipantJoined(
                participant=meeting.roster.members[late.connection.participant_id].public()
            ),
        ]
    await meeting.stop()


@pytest.mark.parametrize(
    ("cap", "mc_room", "refusal"),
    [(5, 100, MEETING_FULL), (100, 7, AT_CAPACITY)],
    ids=["meeting_cap", "mc_capacity"],
)
async def test_the_cap_counts_the_seats_of_the_batch(
    redis_client: aioredis.Redis, cap: int, mc_room: int, refusal: JoinRefusal
) -> None:
    store = CountingStore(redis_client)
    counted = [0]
    meeting = await hosted(
        store,
        redis_client,
        "capped",
        counted,
        limits=MeetingLimits(max_participants=cap),
        admit=lambda: counted[0] < mc_room,
    )
    admitted = min(cap, mc_room)

    answers = await storm(meeting, [Client(f"u{i}", "capped") for i in range(12)])

    assert answers == [None] * admitted + [refusal] * (12 - admitted)
    assert len(meeting.roster) == counted[0] == admitted
    fields = await redis_client.hkeys("meeting:{capped}:state")
    assert len([f for f in fields if isinstance(f, bytes) and f.startswith(b"p:")]) == admitted
    await meeting.stop()


async def test_a_failed_write_takes_back_every_seat_of_the_batch(
    redis_client: aioredis.Redis,
) -> None:
    store = CountingStore(redis_client)
    counted = [0]
    meeting = await hosted(store, redis_client, "flaky", counted)
    store.fail = StoreUnavailable("redis went away")
    clients = [Client(f"u{i}", "flaky") for i in range(8)]

    assert await storm(meeting, clients) == [STORE_DOWN] * 8

    assert len(meeting.roster) == counted[0] == 0 and meeting.roster.host_id is None
    assert not meeting.children and not any(c.connection.running for c in clients)
    assert not any(f.startswith(b"p:") for f in await redis_client.hkeys("meeting:{flaky}:state"))
    again = [Client(f"v{i}", "flaky") for i in range(3)]
    assert await storm(meeting, again) == [None] * 3
    assert len(meeting.roster) == counted[0] == 3
    await meeting.stop()


async def test_a_batch_fenced_out_admits_nobody_and_the_meeting_stops(
    redis_client: aioredis.Redis,
) -> None:
    store = CountingStore(redis_client)
    counted = [0]
    meeting = await hosted(store, redis_client, "taken", counted)
    await store.acquire("taken", "mc-b")

    answers = await storm(meeting, [Client(f"u{i}", "taken") for i in range(6)])

    assert answers == [UNAVAILABLE] * 6
    assert meeting.lost and meeting.end_reason == "fenced_out"
    assert len(meeting.roster) == counted[0] == 0
    await meeting.wait(2)
    assert await redis_client.get("meeting:{taken}:owner") == b"mc-b"


async def test_a_reclaimed_seat_in_a_batch_comes_after_the_seats_before_it(
    redis_client: aioredis.Redis,
) -> None:
    store = CountingStore(redis_client)
    meeting = await hosted(store, redis_client, "mixed")
    first = Client("u0", "mixed")
    assert await meeting.ask(first.request) is None
    seat = first.connection.participant_id
    meeting.send(ConnectionLost(first.connection))
    await eventually(
        lambda: not meeting.roster.members[seat].connected, timeout=5, what="u0 disconnected"
    )
    before = store.hsets
    batch = [Client("u1", "mixed"), Client("u0", "mixed"), Client("u2", "mixed")]

    assert await storm(meeting, batch) == [None] * 3

    # u1's seat, u0's seat taken back (its own write), u2's seat.
    assert store.hsets - before == 3
    assert batch[1].connection.participant_id == seat
    assert len(meeting.roster) == 3 and all(m.connected for m in meeting.roster.members.values())
    await eventually(lambda: bool(batch[1].frames), timeout=5, what="u0's answer")
    answer = batch[1].messages()[0]
    assert isinstance(answer, JoinAnswer) and answer.reconnected
    assert {p.participant_id for p in answer.roster} == {
        seat,
        batch[0].connection.participant_id,
    }
    await meeting.stop()


async def test_fenced_out_is_not_swallowed_by_a_single_join(redis_client: aioredis.Redis) -> None:
    store = CountingStore(redis_client)
    meeting = await hosted(store, redis_client, "single")
    store.fail = FencedOut("single", 9, "mc-z")
    assert await meeting.ask(Client("u0", "single").request) == UNAVAILABLE
    assert meeting.lost and len(meeting.roster) == 0
    await meeting.wait(2)


async def test_a_batch_records_its_joined_events_in_join_order(
    redis_client: aioredis.Redis,
) -> None:
    store = CountingStore(redis_client)
    meeting = await hosted(store, redis_client, "told", events=EventOutbox(redis_client))
    clients = [Client(f"u{i}", "told") for i in range(12)]

    assert await storm(meeting, clients) == [None] * 12

    stream = stream_key(partition_of("told"))
    events = [json.loads(fields[b"e"]) for _, fields in await redis_client.xrange(stream)]
    joined = [e for e in events if e["meeting_id"] == "told" and e["type"] == "participant_joined"]
    assert [e["participant"]["participant_id"] for e in joined] == [
        c.connection.participant_id for c in clients
    ]
    assert [e["seq"] for e in joined] == sorted(e["seq"] for e in joined)
    await meeting.stop()
