"""The join-token ledger on a real Redis: a token is spent once, also when a storm of spends
goes to Redis in one pipeline (`runtime.redis_coalesce`), and an unreachable Redis is
StoreUnavailable, never a second use."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from darktower.embedded.redis import free_port
from darktower.fencing import StoreUnavailable
from darktower.fencing.keys import join_token_key
from darktower.mc.join_once import RedisJoinTokenLedger


async def test_a_token_spent_many_times_at_once_joins_once(redis_client: aioredis.Redis) -> None:
    ledger = RedisJoinTokenLedger(redis_client)
    spent = await asyncio.gather(*(ledger.spend("m1", "ab" * 16, 60) for _ in range(10)))
    assert spent.count(True) == 1 and spent.count(False) == 9
    assert not await ledger.spend("m1", "ab" * 16, 60)


async def test_a_storm_of_tokens_is_spent_each_once_with_its_ttl(
    redis_client: aioredis.Redis,
) -> None:
    ledger = RedisJoinTokenLedger(redis_client)
    tokens = [f"{i:032x}" for i in range(40)]
    assert await asyncio.gather(*(ledger.spend("m2", t, 90) for t in tokens)) == [True] * 40
    assert await asyncio.gather(*(ledger.spend("m2", t, 90) for t in tokens)) == [False] * 40
    ttl = await redis_client.ttl(join_token_key("m2", tokens[0]))
    assert 0 < ttl <= 90
    await redis_client.script_flush()  # a Redis that lost the script loads it again
    assert await ledger.spend("m2", "cd" * 16, 0) is True
    assert 0 < await redis_client.ttl(join_token_key("m2", "cd" * 16)) <= 1


async def test_an_unreachable_ledger_is_store_unavailable() -> None:
    client = aioredis.Redis(port=free_port(), socket_connect_timeout=0.5)
    ledger = RedisJoinTokenLedger(client)
    with pytest.raises(StoreUnavailable) as raised:
        await asyncio.gather(ledger.spend("m3", "ef" * 16, 60), ledger.spend("m3", "01" * 16, 60))
    assert "127.0.0.1" not in str(raised.value) and "localhost" not in str(raised.value)
    await client.aclose()
