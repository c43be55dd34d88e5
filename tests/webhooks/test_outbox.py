"""`EventOutbox` on a real Redis: what is recorded, numbered, fenced and trimmed."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from darktower.embedded.redis import free_port
from darktower.fencing import Lease
from darktower.webhooks.events import EventParticipant
from darktower.webhooks.keys import PARTITIONS, meeting_key, partition_of, stream_key
from darktower.webhooks.outbox import EventOutbox
from tests.support.metrics import sample

ADA = EventParticipant(participant_id="p-1", identity="ada", name="Ada", role="host")
GEN = 1_764_000_000_000_001


async def recorded(client: aioredis.Redis, meeting_id: str) -> list[dict[str, Any]]:
    entries = await client.xrange(stream_key(partition_of(meeting_id)))
    events = [json.loads(fields[b"e"]) for _id, fields in entries]
    return [e for e in events if e["meeting_id"] == meeting_id]


async def test_a_meetings_life_is_recorded_in_order_with_consecutive_seq(
    redis_client: aioredis.Redis,
) -> None:
    outbox = EventOutbox(redis_client)
    lease = Lease("standup", "mc-1", GEN)
    assert (await outbox.meeting_acquired(lease)) is not None
    await outbox.participant_joined(lease, ADA)
    await outbox.participant_left(lease, ADA, "voluntary")
    last = await outbox.meeting_ended(lease, "last_participant_left")
    assert last is not None and last.seq == 4 and last.type == "meeting_ended"

    events = await recorded(redis_client, "standup")
    assert [(e["seq"], e["type"]) for e in events] == [
        (1, "meeting_started"),
        (2, "participant_joined"),
        (3, "participant_left"),
        (4, "meeting_ended"),
    ]
    assert len({e["id"] for e in events}) == 4
    assert all(e["id"].startswith("evt_") and e["created_at"].endswith("Z") for e in events)
    assert all(e["mc_id"] == "mc-1" and e["generation"] == GEN for e in events)
    assert events[1]["participant"] == {
        "participant_id": "p-1",
        "identity": "ada",
        "name": "Ada",
        "role": "host",
    }
    assert events[2]["reason"] == "voluntary"
    assert events[3]["reason"] == "last_participant_left"
    assert "participant" not in events[0] and "reason" not in events[0]


async def test_a_takeover_is_meeting_moved_and_the_old_owner_records_nothing_more(
    redis_client: aioredis.Redis,
) -> None:
    outbox = EventOutbox(redis_client)
    old, new = Lease("standup", "mc-1", GEN), Lease("standup", "mc-2", GEN + 1)
    await outbox.meeting_acquired(old)
    await outbox.participant_joined(old, ADA)
    moved = await outbox.meeting_acquired(new)
    assert moved is not None and (moved.type, moved.seq) == ("meeting_moved", 3)
    # The cut-off MC, unaware, goes on: refused, counted, nothing recorded.
    stale_before = sample("mc_webhook_events_total", type="participant_left", result="stale")
    assert await outbox.participant_left(old, ADA, "timeout") is None
    assert await outbox.meeting_ended(old, "empty_timeout") is None
    assert await outbox.meeting_acquired(old) is None
    stale = sample("mc_webhook_events_total", type="participant_left", result="stale")
    assert stale == stale_before + 1
    # The same MC taking the same generation again (an idempotent assignment): nothing.
    assert await outbox.meeting_acquired(new) is None

    events = await recorded(redis_client, "standup")
    assert [e["type"] for e in events] == ["meeting_started", "participant_joined", "meeting_moved"]
    assert events[2]["previous_mc_id"] == "mc-1" and events[2]["mc_id"] == "mc-2"


async def test_a_meeting_started_again_after_its_end_continues_its_seq(
    redis_client: aioredis.Redis,
) -> None:
    outbox = EventOutbox(redis_client)
    first, second = Lease("daily", "mc-1", GEN), Lease("daily", "mc-2", GEN + 5)
    await outbox.meeting_acquired(first)
    await outbox.meeting_ended(first, "empty_timeout")
    # Ended: a late event of that generation is refused.
    assert await outbox.participant_joined(first, ADA) is None
    again = await outbox.meeting_acquired(second)
    assert again is not None and (again.type, again.seq) == ("meeting_started", 3)
    key = meeting_key(partition_of("daily"), "daily")
    assert 0 < await redis_client.ttl(key) <= 8 * 24 * 3600


async def test_an_event_of_a_newer_generation_whose_start_was_lost_is_recorded(
    redis_client: aioredis.Redis,
) -> None:
    outbox = EventOutbox(redis_client)
    joined = await outbox.participant_joined(Lease("lost-start", "mc-3", GEN), ADA)
    assert joined is not None and joined.seq == 1


async def test_meetings_spread_over_every_partition(redis_client: aioredis.Redis) -> None:
    outbox = EventOutbox(redis_client)
    for i in range(200):
        await outbox.meeting_acquired(Lease(f"m-{i}", "mc-1", GEN))
    used = [p for p in range(PARTITIONS) if await redis_client.exists(stream_key(p))]
    assert len(used) == PARTITIONS


async def test_entries_older_than_the_retention_are_trimmed(redis_client: aioredis.Redis) -> None:
    # Retention 0: each XADD trims what is older than now — approximately (`~`), i.e. whole
    # nodes of the stream (100 entries each), so some entries stay.
    outbox = EventOutbox(redis_client, retention_seconds=0)
    lease = Lease("busy", "mc-1", GEN)
    await outbox.meeting_acquired(lease)
    for i in range(400):
        await outbox.participant_joined(lease, EventParticipant(f"p-{i}", f"u-{i}", "U", "host"))
    assert await redis_client.xlen(stream_key(partition_of("busy"))) < 401
    # The counter is not trimmed: seq goes on.
    last = await outbox.meeting_ended(lease, "empty_timeout")
    assert last is not None and last.seq == 402


async def test_an_unreachable_redis_loses_the_event_without_raising() -> None:
    # No retries: the refusal is the point, not redis-py's reconnection backoff.
    client = aioredis.Redis(
        host="127.0.0.1", port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    try:
        outbox = EventOutbox(client)
        before = sample("mc_webhook_events_total", type="meeting_started", result="failed")
        assert await outbox.meeting_acquired(Lease("standup", "mc-1", GEN)) is None
        after = sample("mc_webhook_events_total", type="meeting_started", result="failed")
        assert after == before + 1
    finally:
        await client.aclose()
