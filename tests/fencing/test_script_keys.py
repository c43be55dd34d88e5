"""Each fencing script is sent only the KEYS it uses (issue 7), audit stream last and only
when auditing; and `acquire(mh=...)` takes a meeting and stores its MH list in one call."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from darktower.fencing import FencedOut, FencedWrite, Lease, MeetingKeys, RedisFencedStore

M = "meeting-k"
K = MeetingKeys.for_meeting(M)


@pytest.fixture
def sent(redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """The KEYS of every script call made on `redis_client`, in order (the calls still run)."""
    calls: list[tuple[str, ...]] = []
    real = redis_client.evalsha

    def recording(sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        calls.append(tuple(str(k) for k in keys_and_args[:numkeys]))
        return real(sha, numkeys, *keys_and_args)

    monkeypatch.setattr(redis_client, "evalsha", recording)
    return calls


async def _load_scripts(store: RedisFencedStore) -> None:
    """Run every script once on another meeting: a first call is sent twice (NOSCRIPT, load)."""
    gen = (await store.acquire("warm-up", "mc-a")).generation
    await store.fenced_set(Lease("warm-up", "mc-a", gen), "mh", "[]")
    await store.fenced_hset(Lease("warm-up", "mc-a", gen), {"a": "1"})
    await store.fenced_check(Lease("warm-up", "mc-a", gen))
    await store.fenced_delete(Lease("warm-up", "mc-a", gen))


@pytest.mark.parametrize("audit", [False, True])
async def test_each_script_gets_only_its_keys(
    redis_client: aioredis.Redis, sent: list[tuple[str, ...]], audit: bool
) -> None:
    store = RedisFencedStore(redis_client, audit=audit)
    await _load_scripts(store)
    sent.clear()
    tail = (K.audit,) if audit else ()
    gen = (await store.acquire(M, "mc-a")).generation
    await store.fenced_set(Lease(M, "mc-a", gen), "mh", "[]")
    await store.fenced_hset(Lease(M, "mc-a", gen), {"a": "1"})
    await store.fenced_check(Lease(M, "mc-a", gen))
    await store.fenced_delete(Lease(M, "mc-a", gen))
    gen = (await store.acquire(M, "mc-a", mh='{"mhs":[]}')).generation
    assert sent == [
        (K.gen, K.owner, *tail),
        (K.gen, K.owner, K.mh, *tail),
        (K.gen, K.owner, K.state, *tail),
        (K.gen, K.owner),  # a check is never audited
        (K.gen, K.owner, K.mh, K.state, *tail),
        (K.gen, K.owner, K.mh, K.state, *tail),  # state: only whether there is one (`fresh`)
    ]
    assert await redis_client.get(K.mh) == b'{"mhs":[]}'
    ops = [e.op for e in await store.audit_log(M)]
    expected = ["acquire", "set", "hset", "delete", "acquire", "set"]
    assert ops == (expected if audit else [])


async def test_pipelined_sets_send_only_their_keys(
    redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    piped: list[tuple[str, ...]] = []
    real = Pipeline.evalsha

    def recording(pipe: Pipeline, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        piped.append(tuple(str(k) for k in keys_and_args[:numkeys]))
        return real(pipe, sha, numkeys, *keys_and_args)

    monkeypatch.setattr(Pipeline, "evalsha", recording)
    store = RedisFencedStore(redis_client)
    gen = (await store.acquire(M, "mc-a")).generation
    outcomes = await store.fenced_set_many([FencedWrite(Lease(M, "mc-a", gen), "mh", "[1]")] * 2)
    assert outcomes == [None, None]
    assert piped == [(K.gen, K.owner, K.mh)] * 2
    assert await redis_client.get(K.mh) == b"[1]"


async def test_acquire_with_mh_stores_both_under_the_new_generation(
    redis_client: aioredis.Redis,
) -> None:
    store = RedisFencedStore(redis_client, audit=True)
    first = (await store.acquire(M, "mc-a", mh="[a]")).generation
    second = (await store.acquire(M, "mc-b", mh="[b]")).generation
    assert second > first
    record = await store.read(M)
    assert (record.generation, record.owner, record.mh) == (second, "mc-b", "[b]")
    # One 'acquire' and one 'set' entry per call, both under the generation it issued.
    entries = [(e.op, e.owner, e.generation) for e in await store.audit_log(M)]
    assert entries == [
        ("acquire", "mc-a", first),
        ("set", "mc-a", first),
        ("acquire", "mc-b", second),
        ("set", "mc-b", second),
    ]
    # The first owner is fenced out of its MH list like any other write.
    with pytest.raises(FencedOut):
        await store.fenced_set(Lease(M, "mc-a", first), "mh", "[stale]")
    assert (await store.read(M)).mh == "[b]"


async def test_acquire_without_mh_leaves_the_mh_list_alone(
    redis_client: aioredis.Redis,
) -> None:
    store = RedisFencedStore(redis_client)
    gen = (await store.acquire(M, "mc-a", mh="[a]")).generation
    assert (await store.acquire(M, "mc-b", min_generation=gen)).generation > gen
    assert (await store.read(M)).mh == "[a]"


async def test_acquire_with_mh_tells_whether_the_meeting_has_state(
    redis_client: aioredis.Redis,
) -> None:
    """`fresh`: no state hash when the lease was issued, so a new owner has nothing to load."""
    store = RedisFencedStore(redis_client)
    first = await store.acquire(M, "mc-a", mh="[a]")
    assert first.fresh
    # Without an MH list the script does not look: never fresh.
    assert not (await store.acquire("meeting-other", "mc-a")).fresh
    await store.fenced_hset(first, {"p:1": "{}"})
    taken = await store.acquire(M, "mc-b", mh="[b]")
    assert not taken.fresh  # a takeover: the roster is there to load
    # Not part of the fence: equal to the same triple built by hand, and not printed.
    assert taken == Lease(M, "mc-b", taken.generation)
    assert "fresh" not in repr(taken)
    await store.fenced_delete(taken)
    assert (await store.acquire(M, "mc-a", mh="[a]")).fresh  # an ended meeting left none
