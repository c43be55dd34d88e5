"""`CoalescedScript`: the calls of one Lua script made in the same turn of the event loop, sent
to Redis together.

Under load many callers run the same script at once (the webhook outbox of an MC admitting a
burst of meetings: their `meeting_started` events; of a batch of joins: their
`participant_joined`). One at a time, every call pays
redis-py's whole path (a pool checkout, a write, a read, a release) for a few bytes. Here the
first call of a loop turn waits that turn out, takes every call made meanwhile and sends them
in one non-transactional pipeline of EVALSHAs: one connection, one round trip. Each script
still runs atomically on its own, in call order, and each caller gets its own reply — or the
exception in its place (an error reply as `ResponseError`, a connection failure as the
exception redis-py raised, for every call of the batch). A call alone in its turn is sent as a
plain script call, one loop turn later. A Redis Cluster client is called one call at a time
(the calls' keys live on different nodes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from darktower.runtime.redis_connect import RedisLike

__all__ = ["CoalescedScript"]

_Call = tuple[Sequence[str], Sequence[str | int], "asyncio.Future[Any] | None"]


class CoalescedScript:
    def __init__(self, client: RedisLike, script: AsyncScript) -> None:
        """`script`: registered on `client` (`client.register_script`)."""
        self._client = client
        self._script = script
        self._batch: list[_Call] | None = None  # the calls of the turn being gathered

    async def __call__(self, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        if isinstance(self._client, RedisCluster):
            return await self._script(keys=keys, args=args)
        if self._batch is not None:  # a call of this turn is gathering: join it
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._batch.append((keys, args, future))
            return await future
        batch: list[_Call] = [(keys, args, None)]
        self._batch = batch
        try:
            await asyncio.sleep(0)  # the other calls of this turn join meanwhile
        except BaseException:
            self._batch = None
            _fail(batch, ConnectionError("the call that gathered this batch was cancelled"))
            raise
        self._batch = None
        if len(batch) == 1:
            return await self._script(keys=keys, args=args)
        return await self._send(batch)

    async def _send(self, batch: list[_Call]) -> Any:
        client = cast(aioredis.Redis, self._client)  # not a cluster (see __call__)
        try:
            # EVALSHA alone: a pipeline of the script object would first ask SCRIPT EXISTS,
            # one more round trip per batch. A server that lost the script (restarted,
            # flushed) answers NOSCRIPT: those calls are made again one by one, which loads it.
            async with client.pipeline(transaction=False) as pipe:
                for keys, args, _ in batch:
                    pipe.evalsha(self._script.sha, len(keys), *keys, *args)
                replies = await pipe.execute(raise_on_error=False)
            for i, (keys, args, _) in enumerate(batch):
                if isinstance(replies[i], NoScriptError):
                    try:
                        replies[i] = await self._script(keys=keys, args=args)
                    except (RedisError, OSError) as exc:
                        replies[i] = exc
        except BaseException as exc:
            _fail(batch, exc if isinstance(exc, Exception) else ConnectionError("cancelled"))
            raise
        for (_, _, future), reply in zip(batch[1:], replies[1:], strict=True):
            if future is not None and not future.done():
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        if isinstance(replies[0], Exception):
            raise replies[0]
        return replies[0]


def _fail(batch: list[_Call], exc: Exception) -> None:
    """Every waiting call of `batch` gets `exc` (the first, the gatherer's own, has none)."""
    for _, _, future in batch:
        if future is not None and not future.done():
            future.set_exception(exc)
