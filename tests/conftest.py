"""Shared fixtures: a real Redis for every test that needs one.

`DARKTOWER_TEST_REDIS_URL` names a Redis to use (CI points it at a database number of its own
on the machine's Redis, e.g. `redis://127.0.0.1:6379/15`); without it an embedded
`redis-server` is started on a free loopback port for the session. Either way the database is
flushed before each test that asks for Redis, so tests never see each other's state, and only
that database is touched. A run claims the database it was given for its whole session
(`tests.support.redis_claim`): a second run on the same database stops at once with an error
naming the first, instead of failing at random on state the other run wrote or flushed.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from darktower.embedded.redis import EmbeddedRedis
from tests.support.redis_claim import DatabaseInUse, claim_database

REDIS_URL_ENV = "DARKTOWER_TEST_REDIS_URL"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get(REDIS_URL_ENV)
    if url:
        with contextlib.ExitStack() as claim:
            try:
                claim.enter_context(claim_database(url))
            except DatabaseInUse as exc:  # before any flush: the other run's state is left alone
                pytest.exit(str(exc), returncode=pytest.ExitCode.USAGE_ERROR)
            yield url
        return
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def redis_db(redis_url: str) -> Iterator[redis.Redis]:
    """A synchronous client on the test Redis (strings decoded), flushed before the test's
    processes start."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port some other program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def pipeline_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every Redis pipeline executed from now on (the calls still run)."""
    sizes: list[int] = []
    real = Pipeline.execute

    async def recording(pipe: Pipeline, raise_on_error: bool = True) -> Any:
        sizes.append(len(pipe.command_stack))
        return await real(pipe, raise_on_error)

    monkeypatch.setattr(Pipeline, "execute", recording)
    return sizes
