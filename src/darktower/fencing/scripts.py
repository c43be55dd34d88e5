"""The Lua scripts of the fencing store and the decoding of their replies.

Each script in `lua/` is prefixed with `lua/fence_lib.lua` (shared helpers; Redis scripts
cannot import) and registered once per client through redis-py's script object, which calls
EVALSHA and reloads the script on NOSCRIPT. `decode_reply` turns a script's status reply into
a generation or one of the typed errors; it is pure, so every reply shape is testable
without Redis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from redis.commands.core import AsyncScript

from darktower.fencing.errors import FencedOut, FencingError, MalformedState
from darktower.runtime.redis_connect import RedisLike

__all__ = [
    "MAX_GENERATION",
    "FencingScripts",
    "decode_reply",
    "load_source",
    "parse_generation",
    "text",
]

# Lua numbers are doubles: above 2^53 - 1 integers stop being exact, so generations stay below.
MAX_GENERATION = 2**53 - 1

_LIB = "fence_lib"
_GENERATION = re.compile(r"[0-9]{1,16}")


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


def text(value: object) -> str:
    """A reply element as str; clients may or may not be set to decode responses."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a string reply, got {type(value).__name__}")


def parse_generation(value: object) -> int | None:
    """A stored generation as int, or None when it breaks the contract (decimal, < 2^53)."""
    try:
        raw = text(value)
    except (TypeError, UnicodeDecodeError):
        return None
    if not _GENERATION.fullmatch(raw):
        return None
    number = int(raw)
    return number if number <= MAX_GENERATION else None


def decode_reply(meeting_id: str, reply: object) -> int:
    """The generation of an OK reply; raises FencedOut, MalformedState or FencingError."""
    if not isinstance(reply, list) or not reply:
        raise FencingError(f"meeting {meeting_id}: unexpected script reply")
    try:
        status = text(reply[0])
        if status == "OK" and len(reply) == 2:
            generation = parse_generation(reply[1])
            if generation is not None:
                return generation
        elif status == "FENCED" and len(reply) == 3:
            stored_gen, stored_owner = reply[1], reply[2]
            raise FencedOut(
                meeting_id,
                None if stored_gen is None else parse_generation(stored_gen),
                None if stored_owner is None else text(stored_owner),
            )
        elif status == "MALFORMED" and len(reply) == 2:
            raise MalformedState(meeting_id, text(reply[1]))
    except (TypeError, UnicodeDecodeError) as exc:
        raise FencingError(f"meeting {meeting_id}: unexpected script reply") from exc
    raise FencingError(f"meeting {meeting_id}: unexpected script reply")
