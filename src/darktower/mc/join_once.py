"""Join tokens are single-use: the MC spends a join token's `jti` on its first join.

`SET meeting:{<id>}:jti:<hex> 1 NX EX <the token's remaining life>` (the meeting's hash slot,
`darktower.fencing.keys.join_token_key`): shared by every MC of the fleet, so a token shown
twice — to this MC or another — joins once; the key is gone when the token could no longer be
valid anyway. A reconnecting client does not reuse its join token: it asks the GC for a fresh
one and proves its session with the binding token.

The SET runs as a script (`lua/spend_join_token.lua`) through `runtime.redis_coalesce`: the
spends of a join storm made in one turn of the event loop go to Redis in one pipeline.
"""

from __future__ import annotations

from importlib import resources
from typing import Protocol

from redis.exceptions import RedisError

from darktower.fencing import StoreUnavailable
from darktower.fencing.keys import join_token_key
from darktower.runtime.redis_coalesce import CoalescedScript
from darktower.runtime.redis_connect import RedisLike

__all__ = ["JoinTokenLedger", "RedisJoinTokenLedger"]


class JoinTokenLedger(Protocol):
    async def spend(self, meeting_id: str, token_id: str, ttl_seconds: int) -> bool:
        """Mark the token used for `ttl_seconds`; False if it was used before.
        Raises StoreUnavailable when the ledger cannot answer."""
        ...


def _source() -> str:
    return (resources.files("darktower.mc") / "lua" / "spend_join_token.lua").read_text("utf-8")


class RedisJoinTokenLedger:
    def __init__(self, client: RedisLike) -> None:
        self._script = CoalescedScript(client, client.register_script(_source()))

    def __repr__(self) -> str:
        return "RedisJoinTokenLedger()"

    async def spend(self, meeting_id: str, token_id: str, ttl_seconds: int) -> bool:
        key = join_token_key(meeting_id, token_id)
        try:
            spent = await self._script(keys=[key], args=[max(1, ttl_seconds)])
        except (RedisError, OSError) as exc:
            # Never the exception text: redis-py's connection errors name host and port.
            raise StoreUnavailable(f"redis unavailable: {type(exc).__name__}") from exc
        return int(spent) == 1
