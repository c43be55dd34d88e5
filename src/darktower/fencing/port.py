"""The fencing store's port: the `FencedStore` protocol, the `Lease` it hands out, its records.

A meeting controller (MC) takes a meeting with `acquire`, which issues a new generation,
records the MC as owner and returns a `Lease` holding (meeting, owner, generation). Every
later write is made with that lease and applied only if its owner and generation still match
what the store holds; otherwise it is refused with `FencedOut` and nothing is written. As
redis-py's `Lock` carries its token, the lease carries the triple, so a caller cannot write
one meeting under another meeting's generation. The Redis adapter is `redis_store`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from darktower.fencing.errors import FencingError
from darktower.fencing.keys import MeetingKeys

__all__ = [
    "MAX_GENERATION",
    "SETTABLE_NAMES",
    "AuditEntry",
    "FencedStore",
    "FencedWrite",
    "Lease",
    "MeetingRecord",
]

# Lua numbers are doubles: above 2^53 - 1 integers stop being exact, so generations stay below.
MAX_GENERATION: Final = 2**53 - 1

# String keys `fenced_set` may write, by name (fenced_set.lua maps each to its KEYS slot).
SETTABLE_NAMES: Final = frozenset({"mh"})


@dataclass(frozen=True, slots=True)
class Lease:
    """Ownership of one meeting by `owner` at `generation`, as `FencedStore.acquire` returns it.

    Holding a lease proves nothing by itself: the store checks it on every write, and a lease
    whose generation was overtaken is refused (`FencedOut`). Built by hand only to name a
    lease seen elsewhere (tests, tools). Raises ValueError for a bad meeting id, an empty
    owner or a generation outside [1, MAX_GENERATION].
    """

    meeting_id: str
    owner: str
    generation: int
    # Known, as the lease was issued, to have no stored state: nothing to take over (an
    # `acquire` with `mh` says so). Not part of the fence: it neither compares nor prints.
    fresh: bool = field(default=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        MeetingKeys.for_meeting(self.meeting_id)  # the id rule (hash tag safe)
        if not self.owner:
            raise ValueError("owner must not be empty")
        generation = self.generation
        if isinstance(generation, bool) or not 1 <= generation <= MAX_GENERATION:
            raise ValueError(f"generation must be in [1, {MAX_GENERATION}]")

    @property
    def keys(self) -> MeetingKeys:
        """The Redis key names of the leased meeting."""
        return MeetingKeys.for_meeting(self.meeting_id)


@dataclass(frozen=True)
class MeetingRecord:
    """What Redis holds for one meeting; generation 0 and owner None when never acquired."""

    meeting_id: str
    generation: int
    owner: str | None
    mh: str | None
    state: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditEntry:
    """One entry of a meeting's audit stream, in stream order."""

    entry_id: str
    generation: int
    owner: str
    op: str  # acquire | set | hset | delete


@dataclass(frozen=True)
class FencedWrite:
    """One item of `fenced_set_many`: the arguments of one `fenced_set`."""

    lease: Lease
    name: str
    value: str

    @property
    def meeting_id(self) -> str:
        return self.lease.meeting_id


class FencedStore(Protocol):
    """Meeting ownership and state behind fencing tokens (a `Lease`: owner + generation)."""

    async def acquire(
        self, meeting_id: str, owner: str, *, min_generation: int = 0, mh: str | None = None
    ) -> Lease:
        """Make `owner` the owner under a new generation, higher than any before.

        With `mh`, also store it as the MH list under that generation, atomically (one round
        trip instead of acquire + fenced_set; audited as an 'acquire' then a 'set' entry),
        and tell in the lease's `fresh` whether the meeting had no state hash, so that a new
        owner of a meeting nobody ran need not read one back."""
        ...

    async def fenced_set(self, lease: Lease, name: str, value: str) -> None:
        """Set string key `name` (one of SETTABLE_NAMES) if `lease` still holds."""
        ...

    async def fenced_set_many(self, items: Sequence[FencedWrite]) -> list[FencingError | None]:
        """Many `fenced_set` in one round trip; per item None (applied) or the refusal."""
        ...

    async def fenced_hset(
        self, lease: Lease, mapping: Mapping[str, str], *, remove: Iterable[str] = ()
    ) -> None:
        """Set `mapping` and delete `remove` in the state hash if `lease` still holds."""
        ...

    async def fenced_delete(self, lease: Lease) -> None:
        """Delete owner, MH list and state if `lease` still holds; gen stays for an hour."""
        ...

    async def fenced_check(self, lease: Lease) -> None:
        """Raise FencedOut unless `lease` still holds."""
        ...

    async def read(self, meeting_id: str) -> MeetingRecord:
        """Everything stored for the meeting, read atomically."""
        ...

    async def audit_log(self, meeting_id: str) -> list[AuditEntry]:
        """The meeting's audit stream, oldest first (empty unless written with audit on)."""
        ...

    async def ping(self) -> None:
        """Return if the store answers; raise StoreUnavailable otherwise."""
        ...

    async def aclose(self) -> None:
        """Release the connections the store owns."""
        ...
