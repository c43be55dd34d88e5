"""RosterSync: the fenced Redis writes of one meeting's roster (layout in `roster.py`).

Every write is fenced by the meeting's lease. `FencedOut` always propagates: the
meeting is lost. Any other store failure of a roster write is logged and answered False, and
the whole roster is rewritten — stale fields removed — at the next `touch` that reaches Redis:
a Redis outage costs the meeting nothing, it carries on from memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from darktower.common.clock import now_ms
from darktower.fencing import FencedOut, FencedStore, FencingError, Lease
from darktower.mc.roster import (
    HOST_FIELD,
    PARTICIPANT_PREFIX,
    Member,
    Roster,
    participant_field,
)

__all__ = ["RosterSync"]

log = logging.getLogger(__name__)


class RosterSync:
    __slots__ = ("_lease", "_meeting_id", "_resync", "_store")

    def __init__(self, store: FencedStore, lease: Lease) -> None:
        self._store = store
        self._lease = lease
        self._meeting_id = lease.meeting_id
        self._resync = False  # a roster write failed: rewrite it all at the next touch

    async def load(self) -> tuple[Roster, list[str]]:
        """The roster stored in Redis and the fields that could not be read."""
        return Roster.from_state(await self.load_state())

    async def load_state(self) -> dict[str, str]:
        """The meeting's whole state hash (roster, removals, settings) as stored."""
        record = await self._store.read(self._meeting_id)
        return dict(record.state)

    async def write(self, mapping: Mapping[str, str], *, remove: Iterable[str] = ()) -> bool:
        """A fenced roster write; False when it did not reach Redis (see the module docstring)."""
        try:
            await self._store.fenced_hset(self._lease, mapping, remove=remove)
        except FencedOut:
            raise
        except FencingError as exc:
            self._resync = True
            log.warning("meeting %s: roster write failed (%s)", self._meeting_id, exc.code)
            return False
        return True

    async def write_member(self, member: Member) -> bool:
        return await self.write({participant_field(member.participant_id): member.to_json()})

    async def write_all(self, roster: Roster) -> bool:
        return await self.write(_roster_mapping(roster))

    async def touch(self, roster: Roster) -> None:
        """Write the meeting's liveness time, with the whole of `roster` when a roster write
        failed since the last successful touch. Store errors propagate."""
        mapping = {"touched_at_ms": str(now_ms())}
        if not self._resync:
            await self._store.fenced_hset(self._lease, mapping)
            return
        stored = (await self._store.read(self._meeting_id)).state
        stale = [
            name
            for name in stored
            if name.startswith(PARTICIPANT_PREFIX)
            and name[len(PARTICIPANT_PREFIX) :] not in roster.members
        ]
        if roster.host_id is None and HOST_FIELD in stored:
            stale.append(HOST_FIELD)
        await self._store.fenced_hset(self._lease, mapping | _roster_mapping(roster), remove=stale)
        self._resync = False


def _roster_mapping(roster: Roster) -> dict[str, str]:
    mapping = {participant_field(p): m.to_json() for p, m in roster.members.items()}
    if roster.host_id is not None:
        mapping[HOST_FIELD] = roster.host_id
    return mapping
