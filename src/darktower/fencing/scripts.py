"""The Lua scripts of the fencing store, loaded from `lua/` and registered on a client.

Each script in `lua/` is prefixed with `lua/fence_lib.lua` (shared helpers; Redis scripts
cannot import) and registered once per client through redis-py's script object, which calls
EVALSHA and reloads the script on NOSCRIPT. Their status replies are decoded by
`translate.decode_reply`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from redis.commands.core import AsyncScript

from darktower.runtime.redis_connect import RedisLike

__all__ = ["FencingScripts", "load_source"]

_LIB = "fence_lib"


@cache
def load_source(name: str) -> str:
    """Source of script `name` (e.g. "acquire"), with the shared helpers prepended."""
    lua = resources.files("darktower.fencing") / "lua"
    lib = (lua / f"{_LIB}.lua").read_text(encoding="utf-8")
    body = (lua / f"{name}.lua").read_text(encoding="utf-8")
    return f"{lib}\n{body}"


@dataclass(frozen=True)
class FencingScripts:
    """The registered scripts of one client."""

    acquire: AsyncScript
    fenced_set: AsyncScript
    fenced_hset: AsyncScript
    fenced_delete: AsyncScript
    fenced_check: AsyncScript

    @classmethod
    def register(cls, client: RedisLike) -> FencingScripts:
        """Register every script on `client`; no round trip until the first call.

        Works for a cluster client too: a call is routed to the node owning the meeting's
        slot, and a NOSCRIPT answer makes redis-py load the script (on every primary) and
        call again.
        """
        return cls(
            acquire=client.register_script(load_source("acquire")),
            fenced_set=client.register_script(load_source("fenced_set")),
            fenced_hset=client.register_script(load_source("fenced_hset")),
            fenced_delete=client.register_script(load_source("fenced_delete")),
            fenced_check=client.register_script(load_source("fenced_check")),
        )
