"""The controller's running totals (issue 7) equal the sums over its hosted meetings through
joins, leaves, a fenced-out meeting and an ended one — against a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from darktower.auth.join_tokens import JoinClaims
from darktower.fencing import RedisFencedStore
from darktower.mc.binding import RedisNonceLedger, SessionBinder
from darktower.mc.connection import ConnectionActor
from darktower.mc.controller import Commit, MeetingControllerActor, Reserve, Reserved
from darktower.mc.meeting import ClientFrame, JoinRequest, MeetingActor, Touch
from darktower.mc.validation import MhRole, MhTarget
from darktower.signaling.protocol import Leave

MHS = (MhTarget("mh-1", "https://mh-1.example", MhRole.PRIMARY),)


async def _drop(frame: str) -> None:
    return None


def _sums(controller: MeetingControllerActor) -> tuple[int, int]:
    meetings = controller.meetings
    return len(meetings), sum(m.participant_count for m in meetings.values())


def _totals(controller: MeetingControllerActor) -> tuple[int, int]:
    capacity = controller.capacity()
    return capacity.current_meetings, capacity.current_participants


async def _host(
    controller: MeetingControllerActor, store: RedisFencedStore, meeting_id: str
) -> MeetingActor:
    assert isinstance(await controller.ask(Reserve(meeting_id)), Reserved)
    lease = await store.acquire(meeting_id, controller.mc_id)
    meeting = await controller.ask(Commit(lease, MHS))
    assert isinstance(meeting, MeetingActor)
    return meeting


async def _join(meeting: MeetingActor, user: str) -> ConnectionActor:
    claims = JoinClaims(meeting.meeting_id, user, user, "gc-test", int(time.time()) + 60)
    connection = ConnectionActor(f"conn-{user}", "", _drop)
    assert await meeting.ask(JoinRequest(claims, connection)) is None
    return connection


async def _until(condition: Callable[[], bool], timeout: float = 5) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within {timeout} s")


@pytest.mark.timeout(30)
async def test_totals_follow_joins_leaves_fenced_out_and_ended_meetings(
    redis_client: aioredis.Redis,
) -> None:
    store = RedisFencedStore(redis_client)
    binder = SessionBinder(b"x" * 32, RedisNonceLedger(redis_client))
    controller = MeetingControllerActor(
        "mc-a",
        store=store,
        max_meetings=10,
        max_participants=6,
        participant_estimate=1,
        is_ready=lambda: True,
        touch_interval=3600,
        binder=binder,
    )
    controller.start()
    try:
        rooms = [await _host(controller, store, f"room-{i}") for i in range(3)]
        assert _totals(controller) == _sums(controller) == (3, 0)

        for i, room in enumerate(rooms):
            for j in range(i + 1):  # 1, 2 and 3 participants
                await _join(room, f"u{i}{j}")
        assert _totals(controller) == _sums(controller) == (3, 6)

        # The participant limit reads the running total: 6 of 6, so no one else gets in.
        claims = JoinClaims("room-0", "late", "late", "gc-test", int(time.time()) + 60)
        refused = await rooms[0].ask(JoinRequest(claims, ConnectionActor("late", "", _drop)))
        assert refused is not None and refused.reason == "at_capacity"
        assert _totals(controller) == (3, 6)

        # A leave (room-2: 3 → 2).
        connection = next(c for c in rooms[2].children if isinstance(c, ConnectionActor))
        await rooms[2].ask(ClientFrame(connection, Leave()))
        assert _totals(controller) == _sums(controller) == (3, 5)

        # Fenced out (room-1, 2 participants): forgotten with its participants.
        await store.acquire("room-1", "mc-b")
        await rooms[1].ask(Touch())
        await _until(lambda: "room-1" not in controller.meetings)
        assert _totals(controller) == _sums(controller) == (2, 3)

        # The last participant of room-0 leaves: the meeting ends.
        only = next(c for c in rooms[0].children if isinstance(c, ConnectionActor))
        await rooms[0].ask(ClientFrame(only, Leave()))
        await _until(lambda: "room-0" not in controller.meetings)
        assert _totals(controller) == _sums(controller) == (1, 2)

        # Taken back anew: a fresh actor carries over the roster in Redis (its 2 participants,
        # disconnected within their grace), counted as soon as it is loaded.
        again = await _host(controller, store, "room-1")
        assert again is not rooms[1]
        await _until(lambda: again.participant_count == 2)
        await _join(again, "back")
        assert _totals(controller) == _sums(controller) == (2, 5)
    finally:
        controller.request_stop()
        await controller.wait(5)
