"""The fencing store on Redis Cluster and Redis Sentinel (real processes on loopback), an MC that
follows a Sentinel failover, and the Redis URL forms of `darktower.runtime.redis_connect`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import MasterNotFoundError
from redis.exceptions import (
    ClusterDownError,
    CrossSlotTransactionError,
    MasterDownError,
    MaxConnectionsError,
    MovedError,
    ReadOnlyError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)

from darktower.auth.client import ServiceTokenProvider
from darktower.auth.keys import generate_instance_key_files, load_service_key
from darktower.auth.tokens import SCOPE_MC, ServiceType
from darktower.embedded.redis import free_port
from darktower.embedded.topologies import ClusterSetup, SentinelSetup
from darktower.fencing import (
    FencedOut,
    FencedWrite,
    FencingError,
    Lease,
    MeetingKeys,
    RedisFencedStore,
    ReplicationTimeout,
    StoreUnavailable,
)
from darktower.fencing.translate import fencing_error
from darktower.mc.server import McApp
from darktower.mc.settings import McSettings
from darktower.runtime.redis_connect import RedisUrlError, connect, describe
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc
from tests.support.mc import assign_request

pytestmark = pytest.mark.slow

T = TypeVar("T")
FAILOVER_SECONDS = 15.0


async def until_available(call: Callable[[], Awaitable[T]], timeout: float) -> tuple[T, int]:
    """Retry `call` while it raises StoreUnavailable (anything else fails the test); return its
    result and how many times it was unavailable first."""
    refusals = 0
    async with asyncio.timeout(timeout):
        while True:
            try:
                return await call(), refusals
            except StoreUnavailable:
                refusals += 1
                await asyncio.sleep(0.1)


# -- Redis Cluster ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterSetup]:
    with ClusterSetup() as setup:
        yield setup


@pytest.fixture
async def cluster_client(cluster: ClusterSetup) -> AsyncIterator[RedisCluster]:
    client = connect(cluster.url)
    assert isinstance(client, RedisCluster)
    try:
        await client.flushall(target_nodes=RedisCluster.PRIMARIES)
        # Forget the scripts too, so that every test sees nodes that never ran them.
        await client.script_flush()  # every primary
        yield client
    finally:
        await client.aclose()


async def test_every_operation_works_on_a_cluster(cluster_client: RedisCluster) -> None:
    store = RedisFencedStore(cluster_client, audit=True)
    await store.ping()
    gen = (await store.acquire("standup", "mc-a")).generation
    await store.fenced_set(Lease("standup", "mc-a", gen), "mh", '{"mhs": []}')
    await store.fenced_hset(Lease("standup", "mc-a", gen), {"touched_at_ms": "1", "x": "2"})
    await store.fenced_hset(Lease("standup", "mc-a", gen), {"touched_at_ms": "3"}, remove=["x"])
    await store.fenced_check(Lease("standup", "mc-a", gen))
    record = await store.read("standup")
    assert (record.generation, record.owner, record.mh) == (gen, "mc-a", '{"mhs": []}')
    assert record.state == {"touched_at_ms": "3"}

    await store.fenced_delete(Lease("standup", "mc-a", gen))
    record = await store.read("standup")
    assert (record.generation, record.owner, record.mh, record.state) == (gen, None, None, {})
    ops = [e.op for e in await store.audit_log("standup")]
    assert ops == ["acquire", "set", "hset", "hset", "delete"]


async def test_fencing_holds_on_a_cluster(cluster_client: RedisCluster) -> None:
    store = RedisFencedStore(cluster_client)
    old = (await store.acquire("standup", "mc-a")).generation
    new = (await store.acquire("standup", "mc-b")).generation
    assert new > old
    stale_calls: list[Callable[[], Awaitable[None]]] = [
        lambda: store.fenced_set(Lease("standup", "mc-a", old), "mh", "stale"),
        lambda: store.fenced_hset(Lease("standup", "mc-a", old), {"k": "v"}),
        lambda: store.fenced_delete(Lease("standup", "mc-a", old)),
        lambda: store.fenced_check(Lease("standup", "mc-a", old)),
        lambda: store.fenced_check(Lease("standup", "mc-b", new - 1)),
    ]
    for stale in stale_calls:
        with pytest.raises(FencedOut) as refused:
            await stale()
        assert (refused.value.stored_generation, refused.value.stored_owner) == (new, "mc-b")
    record = await store.read("standup")
    assert (record.owner, record.mh, record.state) == ("mc-b", None, {})


async def test_keys_of_a_meeting_share_a_slot_and_meetings_spread_over_the_masters(
    cluster: ClusterSetup, cluster_client: RedisCluster
) -> None:
    keys = MeetingKeys.for_meeting("standup")
    slots = {await cluster_client.cluster_keyslot(key) for key in keys.all}
    assert len(slots) == 1

    store = RedisFencedStore(cluster_client, audit=True)
    for i in range(50):
        gen = (await store.acquire(f"m-{i}", "mc-a")).generation
        await store.fenced_set(Lease(f"m-{i}", "mc-a", gen), "mh", "x")
        await store.fenced_hset(Lease(f"m-{i}", "mc-a", gen), {"k": "v"})
    # Where each key landed, asked of each master itself (KEYS lists only the local keys).
    holders: dict[str, list[int]] = {}
    for node in cluster.nodes:
        async with aioredis.Redis(port=node.port) as direct:
            for key in await direct.keys("meeting:*"):
                meeting = key.decode().split("{")[1].split("}")[0]
                holders.setdefault(meeting, []).append(node.port)
    assert len(holders) == 50
    # gen, owner, mh, state and audit of each meeting, all five on one node
    assert all(len(ports) == 5 and len(set(ports)) == 1 for ports in holders.values())
    assert len({ports[0] for ports in holders.values()}) == 3


async def test_fenced_set_many_on_a_cluster(cluster_client: RedisCluster) -> None:
    store = RedisFencedStore(cluster_client, audit=True)
    gens = {f"m-{i}": (await store.acquire(f"m-{i}", "mc-a")).generation for i in range(30)}
    # The scripts were loaded by the acquires (one per node at least); forget them so that
    # the pipeline meets NOSCRIPT on every node and must load and run again.
    await cluster_client.script_flush()  # every primary
    items = [FencedWrite(Lease(m, "mc-a", g), "mh", f"mh-of-{m}") for m, g in gens.items()]
    items.append(FencedWrite(Lease("m-0", "mc-b", gens["m-0"]), "mh", "intruder"))
    items.append(FencedWrite(Lease("m-1", "mc-a", gens["m-1"] - 1), "mh", "stale"))
    outcomes = await store.fenced_set_many(items)
    assert outcomes[:30] == [None] * 30
    assert all(isinstance(o, FencedOut) for o in outcomes[30:])
    for m in gens:
        assert (await store.read(m)).mh == f"mh-of-{m}"
    assert [e.op for e in await store.audit_log("m-0")] == ["acquire", "set"]


async def test_replica_wait_on_a_cluster_asks_the_meetings_node(
    cluster_client: RedisCluster,
) -> None:
    # The test cluster has masters only: a WAIT for one replica must come back short.
    store = RedisFencedStore(cluster_client, replica_wait=1, replica_wait_timeout_ms=50)
    with pytest.raises(ReplicationTimeout) as short:
        await store.acquire("standup", "mc-a")
    assert (short.value.wanted, short.value.acknowledged) == (1, 0)
    # The acquire itself was applied (ReplicationTimeout says so), on the meeting's node.
    record = await store.read("standup")
    assert record.owner == "mc-a" and record.generation > 0


async def test_a_cluster_losing_its_nodes_is_unavailable() -> None:
    with ClusterSetup() as setup:
        client = connect(setup.url, socket_timeout=0.5, connect_timeout=0.5)
        store = RedisFencedStore(client)
        gen = (await store.acquire("standup", "mc-a")).generation
        await store.ping()
        setup.kill_node(1)
        with pytest.raises(StoreUnavailable):  # one master gone is enough
            await store.ping()
        setup.stop()
        calls: list[Callable[[], Awaitable[object]]] = [
            store.ping,
            lambda: store.acquire("standup", "mc-b"),
            lambda: store.fenced_hset(Lease("standup", "mc-a", gen), {"k": "v"}),
            lambda: store.read("standup"),
            lambda: store.audit_log("standup"),
        ]
        try:
            for call in calls:
                with pytest.raises(StoreUnavailable):
                    await call()
            # A batch reports per item, or raises when the whole pipeline failed.
            try:
                outcome = await store.fenced_set_many(
                    [FencedWrite(Lease("standup", "mc-a", gen), "mh", "x")]
                )
            except StoreUnavailable:
                pass
            else:
                assert isinstance(outcome[0], StoreUnavailable)
        finally:
            await client.aclose()


@pytest.mark.parametrize(
    "error",
    [
        ClusterDownError("CLUSTERDOWN The cluster is down"),
        MasterDownError("MASTERDOWN Link with MASTER is down"),
        TryAgainError("TRYAGAIN Multiple keys request during rehashing of slot"),
        MovedError("3999 127.0.0.1:7001"),
        SlotNotCoveredError('Slot "3999" is not covered by the cluster.'),
        RedisClusterException("Redis Cluster cannot be connected. 127.0.0.1:7000 refused"),
        MaxConnectionsError("Too many connections"),
        MasterNotFoundError("No master found for 'mymaster' : Redis<127.0.0.1:26379> refused"),
        ReadOnlyError("READONLY You can't write against a read only replica."),
    ],
    ids=lambda e: type(e).__name__,
)
def test_cluster_and_failover_errors_are_store_unavailable(error: Exception) -> None:
    translated = fencing_error(error)
    assert isinstance(translated, StoreUnavailable)
    assert "127.0.0.1" not in str(translated)  # redis-py's text names hosts; ours does not


def test_a_pipeline_across_slots_is_a_bug_not_an_outage() -> None:
    translated = fencing_error(CrossSlotTransactionError("keys in different slots"))
    assert type(translated) is FencingError


# -- Redis Sentinel --------------------------------------------------------------------------


@pytest.fixture
def sentinels() -> Iterator[SentinelSetup]:
    with SentinelSetup() as setup:
        yield setup


async def failover(setup: SentinelSetup) -> int:
    """Kill the master, wait until the sentinels promoted the replica; its port."""
    old = setup.kill_master()
    _, port = await asyncio.to_thread(setup.wait_failover, old, FAILOVER_SECONDS)
    assert port != old
    return port


@pytest.mark.timeout(90)
async def test_the_store_follows_a_sentinel_failover(sentinels: SentinelSetup) -> None:
    client = connect(sentinels.url, socket_timeout=1.0, connect_timeout=1.0)
    store = RedisFencedStore(client)
    # The acquire is confirmed by the replica, so the promoted replica must hold it.
    synced = RedisFencedStore(client, replica_wait=1, replica_wait_timeout_ms=5000)
    try:
        gen = (await synced.acquire("standup", "mc-a")).generation
        await store.fenced_hset(Lease("standup", "mc-a", gen), {"n": "1"})

        killed_at = time.monotonic()
        old_port = sentinels.kill_master()
        # Every call in between is StoreUnavailable (until_available lets nothing else by).
        _, refusals = await until_available(
            lambda: store.fenced_hset(Lease("standup", "mc-a", gen), {"n": "2"}), FAILOVER_SECONDS
        )
        assert refusals > 0  # the kill was noticed
        assert time.monotonic() - killed_at < FAILOVER_SECONDS

        new_port = (await asyncio.to_thread(sentinels.wait_failover, old_port, 5.0))[1]
        await store.fenced_set(Lease("standup", "mc-a", gen), "mh", "after")
        taken = (await store.acquire("standup", "mc-b")).generation
        assert taken > gen
        with pytest.raises(FencedOut):
            await store.fenced_hset(Lease("standup", "mc-a", gen), {"n": "3"})
        await store.acquire("retro", "mc-a")

        # All of that went to the promoted replica.
        async with aioredis.Redis(port=new_port) as promoted:
            keys = MeetingKeys.for_meeting("standup")
            assert await promoted.get(keys.gen) == str(taken).encode()
            assert await promoted.get(keys.owner) == b"mc-b"
            assert await promoted.hget(keys.state, "n") == b"2"
            assert await promoted.exists(MeetingKeys.for_meeting("retro").gen) == 1
    finally:
        await client.aclose()


@pytest.mark.timeout(90)
async def test_an_acquire_confirmed_by_the_replica_survives_the_failover(
    sentinels: SentinelSetup,
) -> None:
    client = connect(sentinels.url, socket_timeout=1.0, connect_timeout=1.0)
    store = RedisFencedStore(client, replica_wait=1, replica_wait_timeout_ms=5000)
    try:
        gen = (await store.acquire("standup", "mc-a")).generation
        await failover(sentinels)

        # The new master has no replica left: ownership changes now report that, applied.
        record, _ = await until_available(lambda: store.read("standup"), FAILOVER_SECONDS)
        assert (record.generation, record.owner) == (gen, "mc-a")
        with pytest.raises(FencedOut):
            await store.fenced_set(Lease("standup", "mc-a", gen - 1), "mh", "stale")
        await store.fenced_check(Lease("standup", "mc-a", gen))
        with pytest.raises(ReplicationTimeout):
            await RedisFencedStore(client, replica_wait=1, replica_wait_timeout_ms=50).acquire(
                "standup", "mc-b"
            )
        assert (await store.read("standup")).generation > gen
    finally:
        await client.aclose()


@pytest.mark.timeout(90)
async def test_an_mc_on_sentinel_keeps_its_meeting_through_a_failover(
    sentinels: SentinelSetup, tmp_path: Path
) -> None:
    generate_instance_key_files(tmp_path, service="gc", instance_id="gc-test")
    settings = McSettings(
        id="mc-sentinel",
        region="test",
        grpc_bind=f"127.0.0.1:{free_port()}",
        health_bind=f"127.0.0.1:{free_port()}",
        redis_url=sentinels.url,
        gc_endpoint="",
        trusted_gc_key_files=[tmp_path / "gc-test.pub"],
        drain_seconds=2,
        redis_check_seconds=0.2,
        meeting_touch_seconds=0.2,
        client_enabled=False,
    )
    app = McApp(settings)
    await app.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}")
    stub = pb_grpc.MeetingControllerServiceStub(channel)
    gc_key = load_service_key(tmp_path / "gc-test.key")
    metadata = ServiceTokenProvider(
        gc_key.private_key,
        service_type=ServiceType.GLOBAL_CONTROLLER,
        scope=SCOPE_MC,
        issuer="gc-test",
        audience="mc-sentinel",  # GC tokens are for one MC
    ).metadata()

    async def assign(meeting_id: str) -> pb.AssignMeetingWithMhResponse:
        return await stub.AssignMeetingWithMh(
            assign_request(meeting_id), metadata=metadata, timeout=10
        )

    keys = MeetingKeys.for_meeting("standup")
    try:
        assert (await assign("standup")).accepted
        # The MC does not WAIT (replica_wait 0): let the replica catch up before the kill.
        async with asyncio.timeout(5):
            while True:
                copies = set()
                for node in sentinels.nodes:
                    async with aioredis.Redis(port=node.port) as direct:
                        copies.add(await direct.get(keys.gen))
                if len(copies) == 1 and None not in copies:
                    break
                await asyncio.sleep(0.05)

        new_port = await failover(sentinels)
        promoted_at_ms = time.time() * 1000

        # Refused as UNHEALTHY while the MC has not seen Redis again, then accepted.
        async with asyncio.timeout(FAILOVER_SECONDS):
            while not (answer := await assign("retro")).accepted:
                assert answer.rejection_reason == pb.REJECTION_REASON_UNHEALTHY
                await asyncio.sleep(0.1)

        # The first meeting's periodic fenced writes land on the promoted replica again.
        async with aioredis.Redis(port=new_port) as promoted, asyncio.timeout(5):
            while True:
                touched = await promoted.hget(keys.state, "touched_at_ms")
                if touched is not None and int(touched) > promoted_at_ms:
                    break
                await asyncio.sleep(0.05)
            assert await promoted.get(keys.owner) == b"mc-sentinel"
            assert await promoted.get(MeetingKeys.for_meeting("retro").owner) == b"mc-sentinel"
        assert set(app.controller.meetings) == {"standup", "retro"}
    finally:
        await channel.close(None)
        await app.stop(deadline_seconds=2)


# -- URLs ------------------------------------------------------------------------------------

SECRET = "s3cr3t-pw"


@pytest.mark.parametrize(
    ("url", "kind", "described"),
    [
        ("redis://127.0.0.1:6379/0", aioredis.Redis, "redis 127.0.0.1:6379 db 0"),
        (f"redis://:{SECRET}@cache.local:6380/2", aioredis.Redis, "redis cache.local:6380 db 2"),
        (f"rediss://user:{SECRET}@cache.local/1", aioredis.Redis, "rediss cache.local:6379 db 1"),
        (
            f"redis+sentinel://:{SECRET}@s1:26379,s2:26380,s3/mymaster",
            aioredis.Redis,
            "sentinel s1:26379,s2:26380,s3:26379 service mymaster db 0",
        ),
        (
            "redis+sentinel://10.0.0.1:5000/mymaster/3",
            aioredis.Redis,
            "sentinel 10.0.0.1:5000 service mymaster db 3",
        ),
        (
            f"redis+cluster://:{SECRET}@n1:7000,n2:7001/",
            RedisCluster,
            "cluster n1:7000,n2:7001",
        ),
        ("redis+cluster://[::1]:7000", RedisCluster, "cluster ::1:7000"),
    ],
)
async def test_url_forms(url: str, kind: type, described: str) -> None:
    client = connect(url)
    try:
        assert isinstance(client, kind)
    finally:
        await client.aclose()
    assert describe(url) == described
    assert SECRET not in described


async def test_a_sentinel_url_gives_the_password_to_the_data_nodes_only() -> None:
    client = connect(f"redis+sentinel://:{SECRET}@s1:26379,s2:26379/mymaster/4")
    try:
        pool = client.connection_pool
        assert pool.connection_kwargs["password"] == SECRET
        assert pool.connection_kwargs["db"] == 4
        sentinel = pool.sentinel_manager.sentinels[0]
        assert sentinel.connection_pool.connection_kwargs.get("password") is None
        assert sentinel.connection_pool.connection_kwargs["socket_timeout"] == 2.0
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    "url",
    [
        f"{SECRET}@127.0.0.1:6379",
        f"memcached://:{SECRET}@127.0.0.1:11211",
        f"redis://:{SECRET}@",
        f"redis://:{SECRET}@h1:6379,h2:6379/0",
        f"redis://:{SECRET}@h1:port/0",
        f"redis://:{SECRET}@h1:6379/zero",
        f"redis://:{SECRET}@h1:99999/0",
        f"redis+sentinel://:{SECRET}@s1:26379",
        f"redis+sentinel://:{SECRET}@s1:26379/",
        f"redis+sentinel://:{SECRET}@s1:26379/bad name!",
        f"redis+sentinel://:{SECRET}@s1:26379/mymaster/x",
        f"redis+sentinel://:{SECRET}@s1:26379,,s2/mymaster",
        f"redis+sentinel://:{SECRET}@s1:26379/mymaster/0/extra",
        f"redis+cluster://:{SECRET}@n1:7000/3",
        f"redis+cluster://:{SECRET}@/",
        f"redis+cluster://:{SECRET}@n1:{SECRET}/",
    ],
)
def test_bad_urls_never_show_the_password(url: str) -> None:
    with pytest.raises(RedisUrlError) as bad:
        connect(url)
    chained: BaseException | None = bad.value
    while chained is not None:  # nor does anything it was raised from
        assert SECRET not in str(chained)
        chained = chained.__cause__ or chained.__context__
    assert SECRET not in describe(url)
