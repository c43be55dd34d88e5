"""`CoalescedScript`: the calls of one Lua script made while Redis is busy with earlier ones,
sent to Redis together.

Under load many callers run the same script at once (an MC admitting a burst of meetings: their
acquires, their `meeting_started` events; a batch of joins: their `participant_joined`). One at
a time, every call pays redis-py's whole path (a pool checkout, a write, a read, a release) for
a few bytes. Here a call first waits out the turn of the event loop it was made in, takes every
call made meanwhile and sends them in one non-transactional pipeline of EVALSHAs: one
connection, one round trip. While that batch is on its way, new calls queue; when it is
answered, the queue goes as the next batch (sent by a task of this object). So one batch at a
time is in flight: a lone caller waits one loop turn, and a stream of callers (gRPC requests
arrive one per loop turn) shares round trips instead of each paying its own. Each script still
runs atomically on its own, in call order, and each caller gets its own reply — or the
exception in its place (an error reply as `ResponseError`, a connection failure as the
exception redis-py raised, for every call of the batch). A call alone in its batch is sent as a
plain script call. A Redis Cluster client is called one call at a time (the calls' keys live
on different nodes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from darktower.runtime.redis_connect import RedisLike

__all__ = ["CoalescedScript"]

log = logging.getLogger(__name__)

_Call = tuple[Sequence[str], Sequence[str | int], "asyncio.Future[Any] | None"]


class CoalescedScript:
    def __init__(self, client: RedisLike, script: AsyncScript) -> None:
        """`script`: registered on `client` (`client.register_script`)."""
        self._client = client
        self._script = script
        self._batch: list[_Call] | None = None  # the calls of the turn being gathered
        self._in_flight = False  # a batch was sent and is not answered yet
        self._queued: list[_Call] = []  # calls made meanwhile: the next batch
        self._sender: asyncio.Task[None] | None = None  # sends the queued batches

    async def __call__(self, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        if isinstance(self._client, RedisCluster):
            return await self._script(keys=keys, args=args)
        if self._batch is not None or self._in_flight:  # join the batch being gathered
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            pending = self._batch if self._batch is not None else self._queued
            pending.append((keys, args, future))
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
        self._in_flight = True
        try:
            if len(batch) == 1:
                return await self._script(keys=keys, args=args)
            return await self._send(batch)
        finally:
            self._next_batch()

    def _next_batch(self) -> None:
        """The batch in flight was answered: send what queued meanwhile, if anything."""
        if not self._queued:
            self._in_flight = False
            return
        batch, self._queued = self._queued, []
        self._sender = asyncio.get_running_loop().create_task(self._send_queued(batch))

    async def _send_queued(self, batch: list[_Call]) -> None:
        try:
            await self._send(batch)  # every call of it has its future: no reply of its own
        except asyncio.CancelledError:
            # The loop is going away: nobody will send the calls queued after these.
            queued, self._queued = self._queued, []
            _fail(queued, ConnectionError("the coalesced script's sender was cancelled"))
            self._in_flight = False
            raise
        except Exception:  # already given to each call of the batch
            log.debug("a coalesced batch failed", exc_info=True)
        self._next_batch()

    async def _send(self, batch: list[_Call]) -> Any:
        """Send `batch` in one pipeline; each call with a future gets its reply there, the
        first call's reply (when it has no future: its caller sends) is returned."""
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
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if future is not None and not future.done():
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        if isinstance(replies[0], Exception):
            raise replies[0]
        return replies[0]


def _fail(batch: list[_Call], exc: Exception) -> None:
    """Every waiting call of `batch` gets `exc` (the gatherer's own has no future)."""
    for _, _, future in batch:
        if future is not None and not future.done():
            future.set_exception(exc)
