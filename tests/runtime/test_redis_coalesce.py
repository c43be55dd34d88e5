"""`CoalescedScript` on a real Redis: the calls of one loop turn share one round trip, and
each still gets its own reply or error."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from darktower.embedded.redis import free_port
from darktower.runtime.redis_coalesce import CoalescedScript
from darktower.webhooks.outbox import EventOutbox

# Appends ARGV[1] to the list KEYS[1] and answers the list's length; ARGV[1] 'boom' is an
# error reply.
SOURCE = """
if ARGV[1] == 'boom' then return redis.error_reply('boom') end
return redis.call('RPUSH', KEYS[1], ARGV[1])
"""


async def test_the_calls_of_one_turn_go_together_in_call_order(
    redis_client: aioredis.Redis, pipeline_sizes: list[int]
) -> None:
    script = CoalescedScript(redis_client, redis_client.register_script(SOURCE))
    assert await script(["warm"], ["x"]) == 1  # alone in its turn: a plain call
    assert pipeline_sizes == []
    replies = await asyncio.gather(*(script(["l"], [str(i)]) for i in range(10)))
    assert replies == list(range(1, 11))  # each its own reply
    assert pipeline_sizes == [10]
    assert await redis_client.lrange("l", 0, -1) == [str(i).encode() for i in range(10)]


async def test_an_error_reply_stays_with_its_call(
    redis_client: aioredis.Redis, pipeline_sizes: list[int]
) -> None:
    script = CoalescedScript(redis_client, redis_client.register_script(SOURCE))
    await script(["warm"], ["x"])
    results = await asyncio.gather(
        script(["l"], ["a"]), script(["l"], ["boom"]), script(["l"], ["b"]), return_exceptions=True
    )
    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], ResponseError)
    assert pipeline_sizes == [3]


async def test_a_lost_connection_reaches_every_call_of_the_batch() -> None:
    client = aioredis.Redis(
        host="127.0.0.1", port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    try:
        script = CoalescedScript(client, client.register_script(SOURCE))
        results = await asyncio.gather(
            *(script(["l"], [str(i)]) for i in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RedisConnectionError) for r in results), results
    finally:
        await client.aclose()


async def test_a_cancelled_gatherer_fails_the_calls_that_joined_it(
    redis_client: aioredis.Redis,
) -> None:
    script = CoalescedScript(redis_client, redis_client.register_script(SOURCE))
    first = asyncio.ensure_future(script(["l"], ["a"]))
    second = asyncio.ensure_future(script(["l"], ["b"]))
    await asyncio.sleep(0)  # one turn: the first gathers, the second joins it
    first.cancel()  # while it waits the turn out
    with pytest.raises(asyncio.CancelledError):
        await first
    with pytest.raises(ConnectionError):
        await second
    assert await script(["l"], ["c"]) == 1  # nothing of the batch was sent; later calls go on


async def test_a_burst_of_meeting_starts_records_each_in_one_round_trip(
    redis_client: aioredis.Redis, pipeline_sizes: list[int]
) -> None:
    from darktower.fencing import Lease

    outbox = EventOutbox(redis_client)
    leases = [Lease(f"m-{i}", "mc-1", 1_764_000_000_000_001) for i in range(8)]
    recorded = await asyncio.gather(*(outbox.meeting_acquired(lease) for lease in leases))
    assert [r.seq if r else None for r in recorded] == [1] * 8
    assert pipeline_sizes == [8]


async def test_a_server_that_lost_the_script_still_runs_every_call(
    redis_client: aioredis.Redis, pipeline_sizes: list[int]
) -> None:
    script = CoalescedScript(redis_client, redis_client.register_script(SOURCE))
    await script(["warm"], ["x"])
    await redis_client.script_flush()
    replies = await asyncio.gather(*(script(["l"], [str(i)]) for i in range(4)))
    assert replies == [1, 2, 3, 4]
    assert await redis_client.lrange("l", 0, -1) == [b"0", b"1", b"2", b"3"]


# Holds Redis for ARGV[2] milliseconds before appending ARGV[1] to the list KEYS[1].
SLOW_SOURCE = """
local t = redis.call('TIME')
local until_us = (t[1] * 1000000 + t[2]) + tonumber(ARGV[2]) * 1000
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= until_us
return redis.call('RPUSH', KEYS[1], ARGV[1])
"""


async def test_calls_made_while_a_batch_is_in_flight_go_together_next(
    redis_client: aioredis.Redis, pipeline_sizes: list[int]
) -> None:
    """gRPC requests arrive one per loop turn: the calls they make while Redis is busy with
    an earlier batch share the next round trip, in call order, each with its own reply."""
    script = CoalescedScript(redis_client, redis_client.register_script(SLOW_SOURCE))
    await script(["warm"], ["x", "0"])
    first = asyncio.ensure_future(script(["l"], ["a", "100"]))  # alone: a plain call
    await asyncio.sleep(0.02)  # it is on its way (Redis holds it for 100 ms)
    later = []
    for value in ("b", "c", "d"):  # one call per loop turn
        later.append(asyncio.ensure_future(script(["l"], [value, "0"])))
        await asyncio.sleep(0)
    assert await first == 1
    assert await asyncio.gather(*later) == [2, 3, 4]
    assert pipeline_sizes == [3]
    assert await redis_client.lrange("l", 0, -1) == [b"a", b"b", b"c", b"d"]
    assert await script(["l"], ["e", "0"]) == 5  # nothing in flight: alone again
    assert pipeline_sizes == [3]


async def test_a_failed_batch_in_flight_does_not_hold_the_calls_queued_behind_it(
    redis_client: aioredis.Redis, pipeline_sizes: list[int]
) -> None:
    script = CoalescedScript(redis_client, redis_client.register_script(SLOW_SOURCE))
    await script(["warm"], ["x", "0"])
    await redis_client.set("s", "a string")  # RPUSH on it: a WRONGTYPE error reply
    first = asyncio.ensure_future(script(["s"], ["a", "50"]))
    await asyncio.sleep(0.01)
    queued = [asyncio.ensure_future(script(["l"], [v, "0"])) for v in ("b", "c")]
    with pytest.raises(ResponseError):
        await first
    assert await asyncio.gather(*queued) == [1, 2]
    assert pipeline_sizes == [2]
