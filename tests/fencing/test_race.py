"""Two meeting controllers race for one meeting; Redis's own audit stream is the judge.

"mc-a" and "mc-b" take the meeting in turns for ROUNDS rounds while each keeps writing with
whatever generation it last acquired, so after every takeover the loser keeps trying stale
writes. The store runs with audit=True: each acquire and each applied write is appended to the
meeting's audit stream inside the same Lua script, so the stream is the true order of events.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import redis.asyncio as aioredis

from darktower.fencing import FencedOut, FencedWrite, Lease, MeetingKeys, RedisFencedStore

M = "race"
K = MeetingKeys.for_meeting(M)
OWNERS = ("mc-a", "mc-b")
ROUNDS = 200


async def test_two_owners_racing_never_apply_a_stale_write(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    # One client each, as two MC processes would have; redis_client flushed the database.
    clients = {owner: aioredis.Redis.from_url(redis_url) for owner in OWNERS}
    stores = {owner: RedisFencedStore(clients[owner], audit=True) for owner in OWNERS}
    believed: dict[str, Lease] = {}  # the lease each MC thinks it holds
    applied: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    stop = asyncio.Event()

    async def writer(owner: str, kind: str) -> None:
        store, seq = stores[owner], 0
        while not stop.is_set():
            lease = believed.get(owner)
            if lease is None:
                await asyncio.sleep(0.0005)
                continue
            seq += 1
            value = f"{owner}:{lease.generation}:{seq}"
            try:
                if kind == "set":
                    await store.fenced_set(lease, "mh", value)
                elif kind == "hset":
                    await store.fenced_hset(lease, {"writer": owner, "gen": str(lease.generation)})
                else:
                    batch = [FencedWrite(lease, "mh", f"{value}:{i}") for i in range(3)]
                    for result in await store.fenced_set_many(batch):
                        if result is None:
                            applied[owner] += 1
                        elif isinstance(result, FencedOut):
                            refused[owner] += 1
                        else:
                            raise result
                    continue
                applied[owner] += 1
            except FencedOut:
                refused[owner] += 1

    async def take_turns() -> None:
        for i in range(ROUNDS):
            owner = OWNERS[i % 2]
            believed[owner] = await stores[owner].acquire(M, owner)
            await asyncio.sleep(0.002)  # let both sides write under this ownership

    try:
        async with asyncio.timeout(30):
            writers = [
                asyncio.create_task(writer(owner, kind))
                for owner in OWNERS
                for kind in ("set", "hset", "many")
            ]
            try:
                await take_turns()
            finally:
                stop.set()
                await asyncio.gather(*writers)

            # Both try one last write; only the final owner may succeed.
            final_owner = OWNERS[(ROUNDS - 1) % 2]
            for owner in OWNERS:
                try:
                    await stores[owner].fenced_set(believed[owner], "mh", f"final:{owner}")
                    applied[owner] += 1
                except FencedOut:
                    refused[owner] += 1
                    assert owner != final_owner
    finally:
        for client in clients.values():
            await client.aclose()

    # The race really happened: both sides had writes applied and refused.
    assert all(applied[owner] > 0 for owner in OWNERS), applied
    assert sum(refused.values()) > 0, refused

    # Judge from the audit stream as Redis holds it.
    entries = [
        (int(fields[b"gen"]), fields[b"owner"].decode(), fields[b"op"].decode())
        for _, fields in await redis_client.xrange(K.audit)
    ]
    acquires = [(gen, owner) for gen, owner, op in entries if op == "acquire"]
    assert len(acquires) == ROUNDS
    assert [owner for _, owner in acquires] == [OWNERS[i % 2] for i in range(ROUNDS)]

    owner_of: dict[int, str] = {}
    current: tuple[int, str] | None = None
    previous_gen = 0
    writes = 0
    for gen, owner, op in entries:
        assert gen >= previous_gen, "generation went down"
        previous_gen = gen
        assert owner_of.setdefault(gen, owner) == owner, f"generation {gen} has two owners"
        if op == "acquire":
            assert current is None or gen > current[0]
            current = (gen, owner)
        else:
            assert op in ("set", "hset")
            # no write under an older generation after a newer acquire
            assert current == (gen, owner), (current, gen, owner, op)
            writes += 1
    assert writes == sum(applied.values())

    # Final state: written by the final owner at the last generation.
    assert current is not None
    assert await redis_client.get(K.owner) == final_owner.encode()
    assert await redis_client.get(K.gen) == str(current[0]).encode()
    assert current == (believed[final_owner].generation, final_owner)
    assert await redis_client.get(K.mh) == f"final:{final_owner}".encode()
    state = await redis_client.hgetall(K.state)
    assert owner_of[int(state[b"gen"])] == state[b"writer"].decode()
