"""The AssignMeetingWithMh use case: reserve in the controller, take ownership in Redis, commit.

`Assigner.assign` answers None (accepted) or a `Rejection`; it raises `StateUnavailable` when
Redis failed part-way, after undoing what it had done (no actor, no reservation, no owner/MH
keys of this attempt left in Redis), and `ActorStopped` when the controller is stopping. Any
other exception is a fault of the MC: it is undone the same way and left to reach the gRPC
edge (INTERNAL). Once reserved, the admission runs to its end even if the calling RPC is
cancelled (shielded), so a vanished caller cannot leave half an admission.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from darktower.actors import ActorStopped
from darktower.common.clock import now_ms
from darktower.fencing import FencedOut, FencedStore, FencingError, Lease, StoreUnavailable
from darktower.mc.admission import Rejection
from darktower.mc.controller import (
    Abort,
    Commit,
    Hosted,
    MeetingControllerActor,
    Pending,
    Rejected,
)
from darktower.mc.errors import StateUnavailable
from darktower.mc.meeting import UpdateMhs
from darktower.mc.validation import AssignRequest, mh_list_json

__all__ = ["Assigner"]

log = logging.getLogger(__name__)


class Assigner:
    def __init__(
        self,
        controller: MeetingControllerActor,
        store: FencedStore,
        *,
        on_store_failure: Callable[[], None] = lambda: None,
    ) -> None:
        self._controller = controller
        self._store = store
        self._on_store_failure = on_store_failure

    async def assign(self, request: AssignRequest) -> Rejection | None:
        while True:
            result = await self._controller.reserve(request.meeting_id)
            if isinstance(result, Rejected):
                return result.reason
            if isinstance(result, Pending):
                await asyncio.shield(result.done)
                continue
            if isinstance(result, Hosted):
                outcome = await result.meeting.ask(UpdateMhs(request.mhs))
                if outcome is None:
                    return None
                if isinstance(outcome, FencedOut):
                    # Another MC took it over; the GC sends it back here: take it back anew.
                    continue
                if isinstance(outcome, FencingError):
                    self._failed(outcome)
                    raise StateUnavailable() from outcome
                # Not a store failure: a fault of the MC, for the gRPC edge (INTERNAL).
                raise TypeError(f"UpdateMhs answered {type(outcome).__name__}")
            return await asyncio.shield(self._admit(request))

    async def _admit(self, request: AssignRequest) -> None:
        meeting_id, owner = request.meeting_id, self._controller.mc_id
        lease: Lease | None = None
        try:
            mh_json = mh_list_json(request.mhs, now_ms())
            # Ownership and the MH list in one script: one round trip, nothing half-written.
            lease = await self._store.acquire(meeting_id, owner, mh=mh_json)
            await self._controller.commit(Commit(lease, request.mhs, request.settings))
        except BaseException as exc:
            await self._undo(meeting_id, lease)
            if isinstance(exc, FencingError):
                self._failed(exc)
                raise StateUnavailable() from exc
            raise
        return

    async def _undo(self, meeting_id: str, lease: Lease | None) -> None:
        try:
            self._controller.send(Abort(meeting_id))
        except ActorStopped:
            log.debug("controller gone while undoing %s", meeting_id)
        if lease is None:
            return
        try:
            await self._store.fenced_delete(lease)
        except FencingError as exc:
            # Left behind: an owner key naming this MC with no actor behind it. Harmless for
            # fencing (the next acquire goes above it) and the GC places the meeting again.
            log.warning("could not undo the admission of %s: %s", meeting_id, exc.code)

    def _failed(self, exc: FencingError) -> None:
        if isinstance(exc, StoreUnavailable):
            self._on_store_failure()
        log.warning("assignment failed on the state store: %s", type(exc).__name__)
