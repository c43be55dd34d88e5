"""Live migration, the GC's side: place a draining MC's meeting on another MC (`MigrateMeeting`).

A draining MC (README "Rolling upgrades") freezes a meeting and asks here where it goes. The
answer comes from the normal placement (`PlacementService.join`): the MC's DRAINING heartbeat
is flushed to the registry first, so the live assignment on it is a `Move(draining)` — its
row ended, a `moved` placement event — and the meeting is placed on the best other MC
(capacity, health, anti-herding; a draining MC is never eligible, and refuses anyway). The MC
that accepts takes the meeting over at a higher generation and loads its roster, host,
settings and MH list from Redis; its takeover records the `meeting_moved` webhook event.

Rules:

* Identity: only the MC the meeting is live on may move it (`CallerMismatch`, the meeting
  stays); a meeting with no live assignment (the GC forgot it: an emptied database) is placed
  as a join would.
* The participants listed (the connected ones, at most `MAX_PARTICIPANTS`) each get a fresh
  join token, in order, as if each had joined: the new MC admits each client once, as the
  session its binding token names (`reconnected: true`, same participant id).
* No MC can take it (`NoControllerAvailable`, `NoMediaHandlerAvailable`): `placed=false` with
  the reason; the MC keeps the meeting and tries again later.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from prometheus_client import Counter

from darktower.common.clock import Clock, utcnow
from darktower.common.errors import invalid_field_as
from darktower.common.ids import validate_id
from darktower.gc.errors import (
    CallerMismatch,
    InvalidGcRequest,
    NoControllerAvailable,
    NoMediaHandlerAvailable,
)
from darktower.gc.join import JoinTokenIssuer, PlacementService
from darktower.gc.join.joiner import Joiner, Role, validate_joiner
from darktower.gc.metrics import RESULTS
from darktower.gc.store import GcStore
from darktower.wire.dark_tower import internal_pb2 as pb

__all__ = [
    "MAX_PARTICIPANTS",
    "MIGRATION_REQUESTS",
    "MigrationResult",
    "MigrationService",
    "validate_migration",
]

log = logging.getLogger(__name__)

MIGRATION_REQUESTS = Counter(
    "gc_migration_requests_total",
    "MigrateMeeting calls of draining MCs, by result (ok = answered, placed or not).",
    ["result"],
)
for _result in RESULTS:  # every series from the start, at 0
    MIGRATION_REQUESTS.labels(_result)

# Participants one MigrateMeeting may list (an MC's default participant limit).
MAX_PARTICIPANTS = 10_000
# The joiner placement is asked for when nobody is connected (its join token is not used).
_NOBODY = Joiner(user_id="migration", display_name="migration")


@dataclass(frozen=True, slots=True)
class MigrationResult:
    placed: bool
    mc_id: str = ""
    signaling_url: str = ""
    join_tokens: tuple[str, ...] = ()
    reason: str = ""


def validate_migration(request: pb.MigrateMeetingRequest) -> tuple[str, str, list[Joiner]]:
    """(controller id, meeting id, joiners) of a MigrateMeeting; InvalidGcRequest naming the
    field otherwise."""
    with invalid_field_as(InvalidGcRequest):
        validate_id(request.controller_id, "controller_id")
        validate_id(request.meeting_id, "meeting_id")
    if len(request.participants) > MAX_PARTICIPANTS:
        raise InvalidGcRequest("participants", f"at most {MAX_PARTICIPANTS}")
    joiners = []
    for i, p in enumerate(request.participants):
        role: Role
        if p.role in ("", "participant"):
            role = "participant"
        elif p.role == "host":
            role = "host"
        else:
            raise InvalidGcRequest(f"participants[{i}].role", "must be host or participant")
        joiner = validate_joiner(
            p.user_id, p.display_name, role=role, name_field=f"participants[{i}].display_name"
        )
        joiners.append(joiner)
    return request.controller_id, request.meeting_id, joiners


class MigrationService:
    def __init__(
        self,
        store: GcStore,
        placement: PlacementService,
        join_tokens: JoinTokenIssuer,
        *,
        region: str,
        flush_heartbeats: Callable[[], Awaitable[object]] | None = None,
        now: Clock = utcnow,
    ) -> None:
        """`flush_heartbeats`: write the heartbeats held behind (the caller's DRAINING one)."""
        self._store = store
        self._placement = placement
        self._join_tokens = join_tokens
        self._region = region
        self._flush = flush_heartbeats
        self._now = now

    async def migrate(
        self, caller: str, meeting_id: str, joiners: Sequence[Joiner]
    ) -> MigrationResult:
        """Place `meeting_id`, live on `caller`, on another MC (see the module docstring)."""
        live = await self._store.active_assignment(meeting_id, self._region)
        if live is not None and live.mc_id is not None and live.mc_id != caller:
            raise CallerMismatch("MigrateMeeting")
        if self._flush is not None:
            await self._flush()
        first = joiners[0] if joiners else _NOBODY
        try:
            result = await self._placement.join(meeting_id, joiner=first)
            if result.mc_id == caller:
                # The registry did not know the caller drains yet (its beat was lost): move it.
                await self._store.end_assignment_if(meeting_id, self._region, caller, self._now())
                result = await self._placement.join(meeting_id, joiner=first)
        except NoControllerAvailable as exc:
            log.info("meeting %s of draining %s not placed: %s", meeting_id, caller, exc.reason)
            return MigrationResult(placed=False, reason=exc.reason)
        except NoMediaHandlerAvailable:
            return MigrationResult(placed=False, reason="no_media_handler")
        if result.mc_id == caller:
            return MigrationResult(placed=False, reason="still_on_the_draining_mc")
        if result.signaling_url is None:  # the new MC serves no clients: nowhere to redirect
            return MigrationResult(placed=True, mc_id=result.mc_id, reason="no_signaling")
        tokens = [result.join_token] if joiners else []
        tokens += [self._join_tokens.mint(meeting_id, j) for j in joiners[1:]]
        log.info(
            "meeting %s migrated from draining %s to %s (%d participants)",
            meeting_id,
            caller,
            result.mc_id,
            len(joiners),
        )
        return MigrationResult(
            placed=True,
            mc_id=result.mc_id,
            signaling_url=result.signaling_url,
            join_tokens=tuple(tokens),
        )
