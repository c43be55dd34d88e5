"""An unreachable Redis: every operation is StoreUnavailable and no secret leaks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from prometheus_client import REGISTRY
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from darktower.embedded.redis import free_port
from darktower.fencing import FencedWrite, Lease, RedisFencedStore, StoreUnavailable

PASSWORD = "s3cr3t-pw"
M = "meeting-u"

Op = Callable[[RedisFencedStore], Awaitable[object]]

OPS: dict[str, Op] = {
    "acquire": lambda s: s.acquire(M, "mc-a"),
    "set": lambda s: s.fenced_set(Lease(M, "mc-a", 1), "mh", "x"),
    "set_many": lambda s: s.fenced_set_many([FencedWrite(Lease(M, "mc-a", 1), "mh", "x")]),
    "hset": lambda s: s.fenced_hset(Lease(M, "mc-a", 1), {"f": "1"}, remove=["g"]),
    "delete": lambda s: s.fenced_delete(Lease(M, "mc-a", 1)),
    "check": lambda s: s.fenced_check(Lease(M, "mc-a", 1)),
    "read": lambda s: s.read(M),
    "audit_log": lambda s: s.audit_log(M),
    "ping": lambda s: s.ping(),
}


@pytest.fixture
async def dead_store() -> AsyncIterator[RedisFencedStore]:
    # Nothing listens on a port that was just free; no retries keep the test fast.
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    store = RedisFencedStore.from_url(url, retry=Retry(NoBackoff(), 0), socket_timeout=1)
    try:
        yield store
    finally:
        await store.aclose()


@pytest.mark.parametrize("name", sorted(OPS))
async def test_every_operation_is_store_unavailable(
    dead_store: RedisFencedStore, name: str
) -> None:
    with pytest.raises(StoreUnavailable) as caught:
        await OPS[name](dead_store)
    error = caught.value
    assert type(error) is StoreUnavailable
    assert error.code == "store_unavailable"
    assert str(error) == "redis unavailable: ConnectionError"
    assert isinstance(error.__cause__, RedisConnectionError)
    for shown in (str(error), repr(error), repr(dead_store)):
        assert PASSWORD not in shown
        assert "redis://" not in shown


async def test_failures_are_counted(dead_store: RedisFencedStore) -> None:
    before = REGISTRY.get_sample_value("mc_redis_errors_total", {"op": "ping"}) or 0.0
    with pytest.raises(StoreUnavailable):
        await dead_store.ping()
    assert REGISTRY.get_sample_value("mc_redis_errors_total", {"op": "ping"}) == before + 1


async def test_repr_shows_options_only() -> None:
    store = RedisFencedStore.from_url(f"redis://:{PASSWORD}@127.0.0.1:1/0", audit=True)
    try:
        assert repr(store) == (
            "RedisFencedStore(audit=True, replica_wait=0, replica_wait_timeout_ms=500)"
        )
    finally:
        await store.aclose()
