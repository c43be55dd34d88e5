"""RedisFencedStore against a real Redis; every outcome is checked in what Redis holds."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY
from redis.exceptions import ResponseError

from darktower.fencing import (
    MAX_GENERATION,
    FencedOut,
    FencedStore,
    FencedWrite,
    FencingError,
    Lease,
    MalformedState,
    MeetingKeys,
    MeetingRecord,
    RedisFencedStore,
    ReplicationTimeout,
    StoreUnavailable,
)
from darktower.fencing.scripts import FencingScripts
from tests.support.tracing import memory_spans

M = "meeting-1"
K = MeetingKeys.for_meeting(M)


@pytest.fixture
def store(redis_client: aioredis.Redis) -> RedisFencedStore:
    return RedisFencedStore(redis_client)


async def redis_now_us(client: aioredis.Redis) -> int:
    seconds, micros = await client.time()
    return seconds * 1_000_000 + micros


async def stored_gen(client: aioredis.Redis) -> int:
    raw = await client.get(K.gen)
    assert raw is not None
    return int(raw)


def test_redis_store_implements_the_port(store: RedisFencedStore) -> None:
    port: FencedStore = store  # mypy checks the structural match
    assert port is store


# --- acquire -------------------------------------------------------------------------------


async def test_acquire_sets_gen_and_owner(
    store: RedisFencedStore, redis_client: aioredis.Redis
) -> None:
    floor = await redis_now_us(redis_client)
    lease = await store.acquire(M, "mc-a")
    assert (lease.meeting_id, lease.owner) == (M, "mc-a")
    assert lease.generation >= floor
    assert await stored_gen(redis_client) == lease.generation
    assert await redis_client.get(K.owner) == b"mc-a"
    assert await redis_client.ttl(K.gen) == -1  # never expires


async def test_a_burst_of_acquires_and_deletes_goes_to_redis_in_one_pipeline_each(
    store: RedisFencedStore, redis_client: aioredis.Redis, pipeline_sizes: list[int]
) -> None:
    """An MC admitting (or ending) many meetings at once: their ownership scripts of one loop
    turn share a round trip (`runtime.redis_coalesce`), each fenced and answered on its own."""
    sizes = pipeline_sizes
    await store.acquire("warm", "mc-a")  # alone: a plain script call
    ids = [f"burst-{i}" for i in range(8)]
    await redis_client.set(MeetingKeys.for_meeting(ids[3]).gen, "not a number")
    outcomes = await asyncio.gather(
        *(store.acquire(m, "mc-a", mh="[]") for m in ids), return_exceptions=True
    )
    assert sizes == [8]
    assert isinstance(outcomes[3], MalformedState)  # its own error, the others acquired
    leases = [o for o in outcomes if isinstance(o, Lease)]
    assert [lease.meeting_id for lease in leases] == ids[:3] + ids[4:]
    assert all(lease.fresh for lease in leases)
    for lease in leases:
        assert await redis_client.get(lease.keys.owner) == b"mc-a"
    await asyncio.gather(*(store.fenced_delete(lease) for lease in leases))
    assert sizes == [8, 7]
    assert all([await redis_client.get(lease.keys.owner) is None for lease in leases])


async def test_store_calls_are_client_spans_inside_a_trace_only(
    store: RedisFencedStore, redis_client: aioredis.Redis
) -> None:
    exported = memory_spans()
    await store.acquire("untraced", "mc-a")
    with trace.get_tracer("test").start_as_current_span("assign"):
        lease = await store.acquire("traced", "mc-a")
        await redis_client.set(lease.keys.owner, "mc-b")  # taken over meanwhile
        with pytest.raises(FencedOut):
            await store.fenced_set(lease, "mh", "[]")
    spans = {s.name: s for s in exported.get_finished_spans()}
    assert {"redis acquire", "redis set"} <= set(spans)  # nothing for the untraced acquire
    assert sum(s.name == "redis acquire" for s in exported.get_finished_spans()) == 1
    assert spans["redis acquire"].kind is SpanKind.CLIENT
    assert spans["redis acquire"].attributes == {
        "db.system.name": "redis",
        "db.operation.name": "acquire",
    }
    assert spans["redis set"].attributes is not None
    assert spans["redis set"].attributes["error.type"] == "FencedOut"


async def test_acquire_is_strictly_increasing_and_above_the_redis_clock(
    store: RedisFencedStore, redis_client: aioredis.Redis
) -> None:
    previous = 0
    for i in range(200):
        floor = await redis_now_us(redis_client)
        gen = (await store.acquire(M, f"mc-{i % 3}")).generation
        assert gen > previous
        assert gen >= floor
        assert await stored_gen(redis_client) == gen
        previous = gen


async def test_acquire_after_redis_lost_its_data_still_goes_up(
    store: RedisFencedStore, redis_client: aioredis.Redis
) -> None:
    issued = [(await store.acquire(M, "mc-a")).generation for _ in range(50)]
    await redis_client.flushdb()  # a restart without persistence, or a failover to a stale replica
    assert await redis_client.get(K.gen) is None
    assert (await store.acquire(M, "mc-b")).generation > max(issued)


async def test_acquire_respects_min_generation(
    store: RedisFencedStore, redis_client: aioredis.Redis
) -> None:
    seen = await redis_now_us(redis_client) + 10**12  # far above the clock
    assert (await store.acquire(M, "mc-a", min_generation=seen)).generation == seen + 1
    assert (await store.acquire(M, "mc-b", min_generation=5)).generation == seen + 2
    assert await stored_gen(redis_client) == seen + 2


# --- fenced writes --------------------------------------------------------------------------


async def test_stale_generation_is_refused_and_nothing_written(
    store: RedisFencedStore, redis_client: aioredis.Redis
) -> None:
    old = await store.acquire(M, "mc-a")
    await store.fenced_set(old, "mh", "v1")
    await store.fenced_hset(old, {"f": "1"})
    new = await store.acquire(M, "mc-b")

    with pytest.raises(FencedOut) as caught:
        await store.fenced_set(old, "mh", "v2")
    assert (caught.value.stored_generation, caught.value.stored_owner) == (new.generation, "mc-b")
    with pytest.raises(FencedOut):
        await store.fenced_hset(old, {"g": "2"}, remove=["f"])
    with pytest.raises(FencedOut):
        await store.fenced_delete(old)
    # the previous owner at the current generation is refused too
    with pytest.raises(FencedOut):
        await store.fenced_set(Lease(M, "mc-a", new.generation), "mh", "v3")

    assert await redis_client.get(K.mh) == b"v1"
    assert await redis_client.hgetall(K.state) == {b"f": b"1"}
    assert await redis_client.get(K.owner) == b"mc-b"
    assert await stored_gen(redis_client) == new.generation


async def test_own_older_generation_is_refused(
    store: RedisFencedStore, redis_client: aioredis.Redis
) -> None:
    # An MC that re-acquired its own meeting: writes still in flight under the old generation
    # must not land.
    old = await store.acquire(M, "mc-a")
    new = await store.acquire(M, "mc-a")
    with pytest.raises(FencedOut) as caught:
        await store.fenced_set(old, "mh", "stale")
    assert (caught.value.stored_generation, caught.value.stored_owner) == (new.generation, "mc-a")
    with pytest.raises(FencedOut):
        await store.fenced_hset(old, {"f": "stale"})
    with pytest.raises(FencedOut):
        await store.fenced_check(old)
    with pytest.raises(FencedOut):
        await store.fenced_delete(old)
    assert await redis_client.get(K.mh) is None
    assert await redis_client.exists(K.state) == 0
    assert await redis_client.get(K.owner) == b"mc-a"


async def test_same_generation_from_another_owner_is_refused(
    store: RedisFencedStore, redis_client: aioredis.Redis
) -> None:
    gen = (await store.acquire(M, "mc-a")).generation
    with pytest.raises(FencedOut) as caught:
        await store.fenced_set(Lease(M, "mc-b", gen), "mh", "hijack")
    assert caught.value.stored_owner == "mc-a"
    with pytest.raises(FencedOut):
        await store.fenced_hset(Lease(M, "mc-b", gen), {"f": "x"})
    assert await redis_client.get(K.mh) is None
    assert await redis_client.exists(K.state) == 0
    await store.fenced_set(Lease(M, "mc-a", gen), "mh", "ok")
    assert await redis_client.get(K.mh) == b"ok"


async def test_writes_to_a_never_acquired_meeting_are_refused(
    store: RedisFencedStore, redis_client: aioredis.Redis
) -> None:
    with pytest.raises(FencedOut) as caught:
        await store.fenced_set(Lease(M, "mc-a", 1), "mh", "x")
    assert (caught.value.stored_generation, caught.value.stored_owner) == (None, None)
    assert await redis_client.keys("*") == []


async def test_delete_keeps_the_generation(
    store: RedisFencedStore, redis_client: aioredis.Redis
) -> None:
    lease = await store.acquire(M, "mc-a")
    await store.fenced_set(lease, "mh", '{"mh": []}')
    await store.fenced_hset(lease, {"f": "1"})
    await store.fenced_delete(lease)

    assert await stored_gen(redis_client) == lease.generation
    assert await redis_client.exists(K.owner, K.mh, K.state) == 0
    with pytest.raises(FencedOut) as caught:
        await store.fenced_set(lease, "mh", "after delete")
    assert (caught.value.stored_generation, caught.value.stored_owner) == (lease.generation, None)
    assert await redis_client.get(K.mh) is None
    assert (await store.acquire(M, "mc-b")).generation > lease.generation


async def test_hset_sets_and_removes_fields(
    store: RedisFencedStore, redis_client: aioredis.Redis
) -> None:
    gen = (await store.acquire(M, "mc-a")).generation
    await store.fenced_hset(Lease(M, "mc-a", gen), {"a": "1", "b": "2", "c": "3"})
    await store.fenced_hset(Lease(M, "mc-a", gen), {"b": "20"}, remove=["a", "missing"])
    assert await redis_client.hgetall(K.state) == {b"b": b"20", b"c": b"3"}
    await store.fenced_hset(Lease(M, "mc-a", gen), {}, remove=("b", "c"))
    assert await redis_client.exists(K.state) == 0
    with pytest.raises(ValueError, match="both set and removed"):
        await store.fenced_hset(Lease(M, "mc-a", gen), {"a": "1"}, remove=["a"])


async def test_hset_many_fields(store: RedisFencedStore, redis_client: aioredis.Redis) -> None:
    gen = (await store.acquire(M, "mc-a")).generation
    mapping = {f"field-{i}": str(i) for i in range(5000)}
    await store.fenced_hset(Lease(M, "mc-a", gen), mapping)
    assert await redis_client.hlen(K.state) == 5000


async def test_fenced_check(store: RedisFencedStore, redis_client: aioredis.Redis) -> None:
    old = await store.acquire(M, "mc-a")
    await store.fenced_check(old)
    new = await store.acquire(M, "mc-b")
    await store.fenced_check(new)
    with pytest.raises(FencedOut):
        await store.fenced_check(old)
    with pytest.raises(FencedOut):
        await store.fenced_check(Lease(M, "mc-a", new.generation))
    assert await redis_client.get(K.owner) == b"mc-b"


async def test_fenced_set_many_reports_each_item(
    store: RedisFencedStore, redis_client: aioredis.Redis
) -> None:
    other = MeetingKeys.for_meeting("meeting-2")
    gen = (await store.acquire(M, "mc-a")).generation
    gen2 = (await store.acquire("meeting-2", "mc-b")).generation
    results = await store.fenced_set_many(
        [
            FencedWrite(Lease(M, "mc-a", gen), "mh", "a1"),
            FencedWrite(Lease(M, "mc-a", gen - 1), "mh", "stale"),
            FencedWrite(Lease("meeting-2", "mc-b", gen2), "mh", "b1"),
            FencedWrite(Lease("meeting-2", "mc-a", gen2), "mh", "wrong owner"),
        ]
    )
    assert results[0] is None
    assert isinstance(results[1], FencedOut)
    assert results[2] is None
    assert isinstance(results[3], FencedOut)
    assert await redis_client.get(K.mh) == b"a1"
    assert await redis_client.get(other.mh) == b"b1"
    assert await store.fenced_set_many([]) == []


# --- malformed state ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [b"abc", b"-1", b"1.5", b"", b" 12", b"99999999999999999"])
async def test_malformed_generation_is_an_error_and_nothing_is_written(
    store: RedisFencedStore, redis_client: aioredis.Redis, bad: bytes
) -> None:
    await redis_client.set(K.gen, bad)
    await redis_client.set(K.owner, "mc-a")
    await redis_client.set(K.mh, "old")

    with pytest.raises(MalformedState) as caught:
        await store.acquire(M, "mc-b")
    assert caught.value.key == K.gen
    for write in (
        store.fenced_set(Lease(M, "mc-a", 12), "mh", "new"),
        store.fenced_hset(Lease(M, "mc-a", 12), {"f": "1"}),
        store.fenced_delete(Lease(M, "mc-a", 12)),
        store.fenced_check(Lease(M, "mc-a", 12)),
        store.read(M),
    ):
        with pytest.raises(MalformedState):
            await write

    assert await redis_client.get(K.gen) == bad
    assert await redis_client.get(K.owner) == b"mc-a"
    assert await redis_client.get(K.mh) == b"old"
    assert await redis_client.exists(K.state) == 0


async def test_generation_of_the_wrong_type_is_malformed(
    store: RedisFencedStore, redis_client: aioredis.Redis
) -> None:
    await redis_client.hset(K.gen, "x", "1")
    with pytest.raises(MalformedState):
        await store.acquire(M, "mc-a")
    with pytest.raises(MalformedState):
        await store.read(M)
    assert await redis_client.exists(K.owner) == 0


async def test_state_of_the_wrong_type_is_malformed(
    store: RedisFencedStore, redis_client: aioredis.Redis
) -> None:
    gen = (await store.acquire(M, "mc-a")).generation
    await redis_client.set(K.state, "not a hash")
    with pytest.raises(MalformedState) as caught:
        await store.fenced_hset(Lease(M, "mc-a", gen), {"f": "1"})
    assert caught.value.key == K.state
    assert await redis_client.get(K.state) == b"not a hash"
    with pytest.raises(MalformedState):
        await store.read(M)


# --- read, audit, scripts -------------------------------------------------------------------


async def test_read_of_an_absent_meeting(store: RedisFencedStore) -> None:
    assert await store.read(M) == MeetingRecord(M, 0, None, None, {})


async def test_read_returns_what_redis_holds(
    store: RedisFencedStore, redis_client: aioredis.Redis
) -> None:
    gen = (await store.acquire(M, "mc-a")).generation
    await store.fenced_set(Lease(M, "mc-a", gen), "mh", '{"mh": ["a"]}')
    await store.fenced_hset(Lease(M, "mc-a", gen), {"k": "v"})
    await redis_client.hset(K.state, "direct", "1")
    record = await store.read(M)
    assert record == MeetingRecord(M, gen, "mc-a", '{"mh": ["a"]}', {"k": "v", "direct": "1"})


async def test_store_works_on_a_decoding_client(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        store = RedisFencedStore(client, audit=True)
        gen = (await store.acquire(M, "mc-a")).generation
        await store.fenced_set(Lease(M, "mc-a", gen), "mh", "x")
        assert (await store.read(M)).mh == "x"
        assert [e.op for e in await store.audit_log(M)] == ["acquire", "set"]
        with pytest.raises(FencedOut):
            await store.fenced_check(Lease(M, "mc-b", gen))
    finally:
        await client.aclose()


async def test_audit_stream_records_acquires_and_applied_writes_only(
    redis_client: aioredis.Redis,
) -> None:
    store = RedisFencedStore(redis_client, audit=True)
    a = (await store.acquire(M, "mc-a")).generation
    await store.fenced_set(Lease(M, "mc-a", a), "mh", "x")
    b = (await store.acquire(M, "mc-b")).generation
    with pytest.raises(FencedOut):
        await store.fenced_hset(Lease(M, "mc-a", a), {"f": "1"})
    await store.fenced_hset(Lease(M, "mc-b", b), {"f": "1"})
    await store.fenced_check(Lease(M, "mc-b", b))
    await store.fenced_delete(Lease(M, "mc-b", b))

    raw = await redis_client.xrange(K.audit)
    assert [(f[b"gen"], f[b"owner"], f[b"op"]) for _, f in raw] == [
        (str(a).encode(), b"mc-a", b"acquire"),
        (str(a).encode(), b"mc-a", b"set"),
        (str(b).encode(), b"mc-b", b"acquire"),
        (str(b).encode(), b"mc-b", b"hset"),
        (str(b).encode(), b"mc-b", b"delete"),
    ]
    log = await store.audit_log(M)
    assert [(e.generation, e.owner, e.op) for e in log] == [
        (a, "mc-a", "acquire"),
        (a, "mc-a", "set"),
        (b, "mc-b", "acquire"),
        (b, "mc-b", "hset"),
        (b, "mc-b", "delete"),
    ]
    assert [e.entry_id for e in log] == [entry_id.decode() for entry_id, _ in raw]


async def test_audit_is_off_by_default(
    store: RedisFencedStore, redis_client: aioredis.Redis
) -> None:
    gen = (await store.acquire(M, "mc-a")).generation
    await store.fenced_set(Lease(M, "mc-a", gen), "mh", "x")
    assert await redis_client.exists(K.audit) == 0
    assert await store.audit_log(M) == []


async def test_scripts_reload_after_script_flush(
    store: RedisFencedStore, redis_client: aioredis.Redis
) -> None:
    gen = (await store.acquire(M, "mc-a")).generation
    await redis_client.script_flush()
    await store.fenced_set(Lease(M, "mc-a", gen), "mh", "after flush")
    await redis_client.script_flush()
    await store.fenced_hset(Lease(M, "mc-a", gen), {"f": "1"})
    await redis_client.script_flush()
    await store.fenced_check(Lease(M, "mc-a", gen))
    await redis_client.script_flush()
    assert await store.fenced_set_many([FencedWrite(Lease(M, "mc-a", gen), "mh", "piped")]) == [
        None
    ]
    await redis_client.script_flush()
    await store.fenced_delete(Lease(M, "mc-a", gen))
    await redis_client.script_flush()
    assert (await store.acquire(M, "mc-b")).generation > gen
    assert await redis_client.get(K.owner) == b"mc-b"
    assert await redis_client.exists(K.mh, K.state) == 0


async def test_scripts_guard_their_own_contract(redis_client: aioredis.Redis) -> None:
    # The store validates names before calling; the script still refuses unknown ones.
    scripts = FencingScripts.register(redis_client)
    with pytest.raises(ResponseError, match="unknown name"):
        await scripts.fenced_set(keys=K.all, args=("0", "mc-a", 1, "owner", "x"))


async def test_audit_stream_of_the_wrong_type_is_malformed(redis_client: aioredis.Redis) -> None:
    store = RedisFencedStore(redis_client, audit=True)
    await redis_client.set(K.audit, "not a stream")
    with pytest.raises(MalformedState) as caught:
        await store.acquire(M, "mc-a")
    assert caught.value.key == K.audit
    assert await redis_client.exists(K.gen, K.owner) == 0
    with pytest.raises(MalformedState):
        await store.audit_log(M)


async def test_invalid_arguments_are_refused_before_redis(store: RedisFencedStore) -> None:
    with pytest.raises(ValueError, match="meeting id"):
        await store.acquire("a{b}", "mc-a")
    with pytest.raises(ValueError, match="owner"):
        await store.acquire(M, "")
    with pytest.raises(ValueError, match="min_generation"):
        await store.acquire(M, "mc-a", min_generation=-1)
    with pytest.raises(ValueError, match="name"):
        await store.fenced_set(Lease(M, "mc-a", 1), "owner", "x")


@pytest.mark.parametrize(
    ("meeting_id", "owner", "generation", "match"),
    [
        ("a{b}", "mc-a", 1, "meeting id"),
        ("", "mc-a", 1, "meeting id"),
        (M, "", 1, "owner"),
        (M, "mc-a", 0, "generation"),
        (M, "mc-a", -1, "generation"),
        (M, "mc-a", True, "generation"),
        (M, "mc-a", MAX_GENERATION + 1, "generation"),
    ],
)
def test_a_lease_names_a_valid_meeting_owner_and_generation(
    meeting_id: str, owner: str, generation: int, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        Lease(meeting_id, owner, generation)


def test_a_lease_carries_its_meeting_keys() -> None:
    lease = Lease(M, "mc-a", MAX_GENERATION)
    assert lease.keys == K
    assert FencedWrite(lease, "mh", "x").meeting_id == M


# --- replica wait and metrics -------------------------------------------------------------------


async def test_replica_wait_raises_replication_timeout_when_replicas_are_missing(
    redis_client: aioredis.Redis,
) -> None:
    replicas = int((await redis_client.info("replication"))["connected_slaves"])
    store = RedisFencedStore(redis_client, replica_wait=replicas + 1, replica_wait_timeout_ms=50)
    with pytest.raises(ReplicationTimeout) as caught:
        await store.acquire(M, "mc-a")
    assert isinstance(caught.value, StoreUnavailable)
    assert (caught.value.wanted, caught.value.acknowledged) == (replicas + 1, replicas)
    # the acquire itself was applied on the primary
    assert await redis_client.get(K.owner) == b"mc-a"
    gen = await stored_gen(redis_client)
    with pytest.raises(ReplicationTimeout):
        await store.fenced_delete(Lease(M, "mc-a", gen))
    assert await redis_client.exists(K.owner) == 0
    # fenced-out deletes are reported as such, not as a replication problem
    with pytest.raises(FencedOut):
        await store.fenced_delete(Lease(M, "mc-a", gen))


async def test_calls_are_timed_and_failures_counted(
    store: RedisFencedStore, redis_client: aioredis.Redis
) -> None:
    def sample(name: str, op: str) -> float:
        return REGISTRY.get_sample_value(name, {"op": op}) or 0.0

    timed = sample("mc_redis_latency_seconds_count", "acquire")
    errors = sample("mc_redis_errors_total", "acquire")
    gen = (await store.acquire(M, "mc-a")).generation
    assert sample("mc_redis_latency_seconds_count", "acquire") == timed + 1
    assert sample("mc_redis_errors_total", "acquire") == errors

    refused = sample("mc_redis_errors_total", "set")
    with pytest.raises(FencedOut):
        await store.fenced_set(Lease(M, "mc-b", gen), "mh", "x")
    assert sample("mc_redis_errors_total", "set") == refused  # a refusal is not an error

    await redis_client.set(K.gen, "abc")
    with pytest.raises(FencingError):
        await store.acquire(M, "mc-a")
    assert sample("mc_redis_errors_total", "acquire") == errors + 1
