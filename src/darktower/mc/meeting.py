"""MeetingActor: one per hosted meeting, child of the MeetingControllerActor.

It holds the meeting's fencing generation and is the only writer of the meeting's Redis state
on this MC. Every write is fenced; a refused write (FencedOut) means another MC owns the
meeting now: the actor counts it (`mc_fenced_out_total`), tells its connections the meeting
moved, and stops, releasing its children. A Redis outage is not a loss of ownership: the actor
keeps the meeting and tries again at the next write.

Replies: `handle` returns None on success or the exception (FencedOut, StoreUnavailable) so
that a refusal reaches the asker without crashing the actor.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from darktower.actors import Actor
from darktower.fencing import FencedOut, FencedStore, FencingError, StoreUnavailable
from darktower.mc.connection import Close, ConnectionActor
from darktower.mc.metrics import FENCED_OUT
from darktower.mc.validation import MhTarget, mh_list_json

__all__ = ["EndMeeting", "MeetingActor", "Touch", "UpdateMhs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UpdateMhs:
    """Store a new ranked MH list (idempotent re-assignment) under the current generation."""

    mhs: tuple[MhTarget, ...]


@dataclass(frozen=True, slots=True)
class Touch:
    """Prove ownership with a fenced write of the meeting's liveness time."""


@dataclass(frozen=True, slots=True)
class EndMeeting:
    """End the meeting: tell the connections, delete its state (fenced), stop."""

    reason: str


@dataclass(frozen=True, slots=True)
class AttachConnection:
    connection: ConnectionActor


MeetingMessage = UpdateMhs | Touch | EndMeeting | AttachConnection


def _now_ms() -> int:
    return int(time.time() * 1000)


class MeetingActor(Actor[MeetingMessage]):
    actor_type = "meeting"
    mailbox_warning = 100
    mailbox_critical = 500

    def __init__(
        self,
        meeting_id: str,
        *,
        owner: str,
        generation: int,
        store: FencedStore,
        mhs: tuple[MhTarget, ...],
    ) -> None:
        super().__init__(meeting_id)
        self.meeting_id = meeting_id
        self.owner = owner
        self.generation = generation
        self.mhs = mhs
        self._store = store
        # Why the actor ended: "fenced_out", or the EndMeeting reason; None while it runs or
        # when it was stopped with the process.
        self.end_reason: str | None = None

    @property
    def lost(self) -> bool:
        """True once the meeting is no longer this actor's to serve (fenced out or ended)."""
        return self.end_reason is not None

    @property
    def participant_count(self) -> int:
        return len(self.children)

    async def handle(self, message: MeetingMessage) -> Exception | None:
        if self.lost:
            return FencedOut(self.meeting_id, None, None)
        try:
            await self._apply(message)
        except FencedOut as exc:
            self._fenced_out(exc)
            return exc
        except StoreUnavailable as exc:
            log.warning("meeting %s: redis unavailable, keeping the meeting", self.meeting_id)
            return exc
        except FencingError as exc:
            log.error("meeting %s: %s", self.meeting_id, exc)
            return exc
        return None

    async def _apply(self, message: MeetingMessage) -> None:
        m, owner, gen = self.meeting_id, self.owner, self.generation
        if isinstance(message, UpdateMhs):
            await self._store.fenced_set(m, owner, gen, "mh", mh_list_json(message.mhs, _now_ms()))
            self.mhs = message.mhs
        elif isinstance(message, Touch):
            await self._store.fenced_hset(m, owner, gen, {"touched_at_ms": str(_now_ms())})
        elif isinstance(message, EndMeeting):
            self._close_connections(message.reason)
            self.end_reason = message.reason
            self.request_stop()
            await self._store.fenced_delete(m, owner, gen)
        else:
            self.spawn(message.connection)

    def _fenced_out(self, exc: FencedOut) -> None:
        FENCED_OUT.inc()
        log.warning(
            "meeting %s fenced out at generation %d (now generation %s, owner %s): stopping",
            self.meeting_id,
            self.generation,
            exc.stored_generation,
            exc.stored_owner,
        )
        self.end_reason = "fenced_out"
        self._close_connections("moved")
        self.request_stop()

    def _close_connections(self, reason: str) -> None:
        for child in self.children:
            if child.running:
                child.send(Close(reason))

    def child_exited(self, child: Actor[Any], exc: BaseException | None) -> None:
        if exc is not None:
            log.warning("meeting %s: connection %s crashed", self.meeting_id, child.name)
