"""MeetingActor: one per hosted meeting, child of the MeetingControllerActor.

The actor is the meeting's owner on this MC: it holds the fencing lease, handles its
mailbox (`messages.py`) one message at a time (joins queued in a row together: their new seats
cost one fenced write, `seats.py`), hands everything about people to its `Participants`
(`participants.py`), proves ownership (`Touch`), stores the MH list (`UpdateMhs`) and ends the
meeting (`EndMeeting`, the last participant gone for good, or nobody connected for
`MeetingLimits.empty_timeout_seconds`).

The empty timer runs whenever no participant is connected — from the start, so that a
meeting that was assigned but never joined ends too — and is cancelled by the first
connection; it is re-armed after each message that leaves nobody connected. When it runs out
the meeting ends with reason `empty_timeout` (its Redis keys deleted by the fenced delete,
the GC told by the controller).

Settings (the meeting API, `darktower.common.meeting_settings`): the ones the assignment
carried, else the ones stored with the meeting in Redis (field `settings`: a failover or
migration target finds them there), else none; they narrow the MC's `MeetingLimits` (the
participant cap never above the MC's own) and give the metadata of each `join_answer`.
Settings that came with the assignment are written to Redis on start.

Replies: `handle` returns None on success, a `JoinRefusal` for a refused join, the number of
participant sessions a `RemoveIdentity` / `MuteIdentity` reached, or the exception
(FencedOut, StoreUnavailable) so that a refusal reaches the asker without crashing the actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from enum import Enum
from typing import Any, assert_never

from darktower.actors import Actor, ActorStopped
from darktower.common.clock import now_ms
from darktower.common.errors import InvalidField
from darktower.common.meeting_settings import MeetingSettings
from darktower.fencing import FencedOut, FencedStore, FencingError, Lease, StoreUnavailable
from darktower.mc.binding import SessionBinder
from darktower.mc.connection import ConnectionActor
from darktower.mc.media import MediaRegistrar
from darktower.mc.meeting.events import MeetingEvents
from darktower.mc.meeting.handoff import (
    MIGRATED,
    FrozenAction,
    Traveller,
    close_quietly,
    hand_off,
    travellers,
    while_frozen,
)
from darktower.mc.meeting.join import STORE_DOWN, UNAVAILABLE, JoinRefusal
from darktower.mc.meeting.limits import EMPTY_TIMEOUT, MeetingLimits
from darktower.mc.meeting.messages import (
    ClientFrame,
    ConnectionLost,
    EmptyExpired,
    EndMeeting,
    FlushUpdates,
    Freeze,
    GraceExpired,
    HandOff,
    JoinRequest,
    MeetingMessage,
    MuteIdentity,
    RemoveIdentity,
    Thaw,
    Touch,
    UpdateMhs,
)
from darktower.mc.meeting.participants import Participants
from darktower.mc.meeting.roster_sync import RosterSync
from darktower.mc.meeting.sessions import SessionTokens
from darktower.mc.metrics import FENCED_OUT
from darktower.mc.roster import SETTINGS_FIELD, Roster
from darktower.mc.validation import MhTarget, mh_list_json
from darktower.signaling.protocol import HostMute, LeaveReason, MediaGrant
from darktower.webhooks.outbox import EventSink

__all__ = ["LAST_PARTICIPANT_LEFT", "MeetingActor"]

log = logging.getLogger(__name__)


class _Apply(Enum):
    """`_migrating`'s answer for a message the meeting handles as usual."""

    APPLY = "apply"


_APPLY = _Apply.APPLY
_Reply = Exception | JoinRefusal | int | list[Traveller] | None

# The end reason of a meeting whose last participant left for good (reported to the GC).
LAST_PARTICIPANT_LEFT = "last_participant_left"


class MeetingActor(Actor[MeetingMessage]):
    actor_type = "meeting"
    mailbox_warning = 100
    mailbox_critical = 500
    batch_types = (JoinRequest,)  # see handle_batch

    def __init__(
        self,
        lease: Lease,
        *,
        store: FencedStore,
        mhs: tuple[MhTarget, ...],
        binder: SessionBinder | None = None,
        grace_seconds: float = 30.0,
        admit: Callable[[], bool] = lambda: True,
        on_participants: Callable[[MeetingActor, int], None] | None = None,
        limits: MeetingLimits | None = None,
        settings: MeetingSettings | None = None,
        events: EventSink | None = None,
        media: MediaRegistrar | None = None,
    ) -> None:
        """`binder` None: no clients are admitted. `admit()` says whether the MC can take
        one more participant (read at each join). `on_participants(self, delta)` is
        called synchronously whenever the roster's size changes (the controller's totals).
        `settings`: the ones the assignment carried (see the module docstring). `media`:
        registers each admitted participant with the meeting's MHs (None: no media grants)."""
        super().__init__(lease.meeting_id)
        meeting_id = self.meeting_id = lease.meeting_id
        self.lease = lease  # (meeting, owner, generation) of every fenced write
        self.mhs = mhs
        self._store = store
        self._sync = RosterSync(store, lease)
        # The webhook outbox (None: no events are recorded); see `events.py`.
        self._events = MeetingEvents(events, lease)
        self._tokens = None if binder is None else SessionTokens(binder, meeting_id)
        # Set by `Freeze` (live migration, `handoff.py`): the meeting writes nothing any more.
        self.frozen = False
        self._participants = Participants(
            meeting_id,
            sync=self._sync,
            tokens=self._tokens,
            grace_seconds=grace_seconds,
            admit=admit,
            spawn=self.spawn,
            expire=self._grace_due,
            on_count=self._count,
            limits=limits,
            flush_later=self._flush_later,
            events=self._events,
            media=None if media is None else self._media_grants,
            media_left=None if media is None else self._media_left,
        )
        self._media = media
        self._mh_muted: dict[str, bool] = {}  # host mutes the MHs were told of
        self._mc_limits = limits or MeetingLimits()
        self._empty_timeout = self._mc_limits.empty_timeout_seconds
        self._assigned_settings = settings
        # The settings in force (see the module docstring); empty until on_start decides.
        self.settings = MeetingSettings()
        self._empty_epochs = itertools.count(1)
        self._empty_timer: tuple[int, asyncio.TimerHandle] | None = None
        self._on_participants = on_participants
        # The roster size last reported through on_participants.
        self.counted_participants = 0
        # Why the actor ended: "fenced_out", or the EndMeeting reason; None while it runs or
        # when it was stopped with the process.
        self.end_reason: str | None = None
        # Set once `on_start` is over (roster loaded, settings decided): reads from outside
        # the mailbox (the meeting API's roster) wait for it.
        self.started = asyncio.Event()

    @property
    def roster(self) -> Roster:
        return self._participants.roster

    @property
    def lost(self) -> bool:
        """True once the meeting is no longer this actor's to serve (fenced out or ended)."""
        return self.end_reason is not None

    @property
    def participant_count(self) -> int:
        """Participants in the roster: connected, or disconnected within their grace."""
        return len(self.roster)

    # -- lifecycle -------------------------------------------------------------------------

    async def on_start(self) -> None:
        self._watch_empty()
        try:
            if not self.lease.fresh:  # a fresh lease: Redis held no state when it was issued
                await self._participants.take_over()
            await self._settle_settings()
        except FencedOut as exc:
            self._fenced_out(exc)
        except FencingError as exc:
            log.warning("meeting %s: roster not loaded (%s)", self.meeting_id, exc.code)
            self._apply_settings(self._assigned_settings or MeetingSettings())
        finally:
            self.started.set()
        if not self.lost:  # recorded once the meeting is this actor's (a takeover: moved)
            await self._events.started()

    async def _settle_settings(self) -> None:
        """Decide the settings in force, store assigned ones, apply them."""
        settings = self._assigned_settings
        if settings is not None:
            if not settings.empty:
                await self._store.fenced_hset(self.lease, {SETTINGS_FIELD: settings.to_json()})
        else:
            raw = self._participants.stored_state.get(SETTINGS_FIELD)
            try:
                settings = MeetingSettings.from_json(raw) if raw else MeetingSettings()
            except InvalidField as exc:
                log.warning("meeting %s: stored settings unreadable (%s)", self.meeting_id, exc)
                settings = MeetingSettings()
        self._apply_settings(settings)

    def _apply_settings(self, settings: MeetingSettings) -> None:
        mc = self._mc_limits
        cap = mc.max_participants
        if settings.max_participants is not None:
            cap = min(cap, settings.max_participants)
        timeout = mc.empty_timeout_seconds
        if settings.empty_timeout_seconds is not None:
            timeout = float(settings.empty_timeout_seconds)
        self.settings = MeetingSettings(cap, int(timeout), settings.metadata)
        self._participants.limits = MeetingLimits(
            empty_timeout_seconds=timeout,
            max_participants=cap,
            coalesce_seconds=mc.coalesce_seconds,
            roster_batch_seconds=mc.roster_batch_seconds,
        )
        self._participants.metadata = settings.metadata
        if timeout != self._empty_timeout:
            self._empty_timeout = timeout
            self._disarm_empty()  # re-armed with the meeting's own timeout
            if not self.lost:
                self._watch_empty()

    async def on_stop(self) -> None:
        self._participants.graces.cancel_all()
        self._participants.connections.cancel()
        self._disarm_empty()
        # Ended here (not fenced out, migrated — `handoff.MIGRATED` — or stopped with the
        # process): its media rooms go too.
        keeps_rooms = self.end_reason in (None, "fenced_out", "migrated")
        if self._media is not None and not keeps_rooms:
            await self._media.end(self.meeting_id, self.mhs)

    async def _media_grants(self, participant_id: str) -> list[MediaGrant]:
        assert self._media is not None
        grants = await self._media.grants(self.meeting_id, participant_id, self.mhs)
        await self._media_mute([participant_id])  # a host mute outlives a reconnect
        return grants

    async def _media_mute(self, participant_ids: list[str]) -> None:
        """Host mutes enforced by the MHs too (`MediaRegistrar.mute`): for each participant,
        its `host_muted` as the roster has it now (a refused host_mute changed nothing)."""
        if self._media is None:
            return
        for participant_id in participant_ids:
            member = self.roster.get(participant_id)
            if member is not None and member.host_muted != self._mh_muted.get(
                participant_id, False
            ):
                self._mh_muted[participant_id] = member.host_muted
                await self._media.mute(self.meeting_id, participant_id, member.host_muted, self.mhs)

    async def _media_moved(self, previous: tuple[MhTarget, ...]) -> None:
        """Other MHs (one went down, `media_watch`; or a new assignment): when the primary
        changed, connected participants get new grants (`media_update`), host mutes follow."""
        if self._media is None:
            return
        connections = self._participants.connections
        ids = [p for p in self.roster.members if connections.get(p) is not None]
        moved = await self._media.move(self.meeting_id, previous, self.mhs, ids)
        if moved is None:
            return
        self._mh_muted.clear()
        await self._media_mute(ids)
        for participant_id, update in moved.items():
            connection = connections.get(participant_id)
            if connection is not None:
                connections.deliver(connection, update)

    async def _media_left(self, participant_id: str) -> None:
        assert self._media is not None
        self._mh_muted.pop(participant_id, None)
        await self._media.leave(self.meeting_id, participant_id, self.mhs)

    # -- messages --------------------------------------------------------------------------

    async def handle(self, message: MeetingMessage) -> _Reply:
        joining = isinstance(message, JoinRequest)
        if self.lost:
            return UNAVAILABLE if joining else FencedOut(self.meeting_id, None, None)
        if self.frozen or isinstance(message, Freeze | Thaw | HandOff):
            frozen = self._migrating(message)
            if not isinstance(frozen, _Apply):
                return frozen
        if isinstance(message, JoinRequest):
            return (await self.handle_batch([message]))[0]
        return await self._guarded(self._apply(message), joining=False)

    async def handle_batch(self, messages: Sequence[MeetingMessage]) -> list[_Reply]:
        """Joins queued in a row: as `handle` would one by one, their new seats recorded by one
        fenced write (`Participants.join_batch`); a store error refuses those left unanswered."""
        joins = [m for m in messages if isinstance(m, JoinRequest)]
        if self.lost or self.frozen or len(joins) != len(messages):
            return [await self.handle(message) for message in messages]
        answers: dict[int, JoinRefusal | None] = {}
        batch = self._participants.join_batch(joins, answers, stopping=not self._accepting)
        refusal = await self._guarded(batch, joining=True)
        return [answers.get(i, refusal) for i in range(len(joins))]

    async def _guarded(
        self, step: Awaitable[JoinRefusal | int | None], *, joining: bool
    ) -> Exception | JoinRefusal | int | None:
        """`step`'s result, or how a store error is answered: to a join, a refusal."""
        try:
            return await step
        except FencedOut as exc:
            self._fenced_out(exc)
            return UNAVAILABLE if joining else exc
        except StoreUnavailable as exc:
            log.warning("meeting %s: redis unavailable, keeping the meeting", self.meeting_id)
            return STORE_DOWN if joining else exc
        except FencingError as exc:
            log.error("meeting %s: %s", self.meeting_id, exc)
            return STORE_DOWN if joining else exc
        finally:
            if not self.lost:
                self._watch_empty()

    async def _apply(self, message: MeetingMessage) -> JoinRefusal | int | None:
        participants = self._participants
        match message:
            case ClientFrame(connection, frame):
                if await participants.client_frame(connection, frame):
                    await self._end(LAST_PARTICIPANT_LEFT)
                elif isinstance(frame, HostMute):
                    await self._media_mute([frame.participant_id])
            case ConnectionLost(connection):
                await participants.connection_lost(connection)
            case GraceExpired(participant_id, epoch):
                if await participants.grace_expired(participant_id, epoch):
                    await self._end(LAST_PARTICIPANT_LEFT)
            case UpdateMhs(mhs):
                await self._store.fenced_set(self.lease, "mh", mh_list_json(mhs, now_ms()))
                previous, self.mhs = self.mhs, mhs
                await self._media_moved(previous)
            case Touch():
                await self._sync.touch(self.roster)
            case FlushUpdates():
                await participants.flush()
            case EmptyExpired(epoch):
                current = self._empty_timer is not None and self._empty_timer[0] == epoch
                if current and not participants.connections:
                    log.info(
                        "meeting %s: nobody connected for %.0f s, ending",
                        self.meeting_id,
                        self._empty_timeout,
                    )
                    await self._end(EMPTY_TIMEOUT)
            case EndMeeting(reason):
                await self._end(reason)
            case RemoveIdentity(identity):
                return await participants.remove_identity(identity)
            case MuteIdentity(identity, muted):
                count = await participants.mute_identity(identity, muted)
                members = self.roster.members.values()
                await self._media_mute([m.participant_id for m in members if m.user_id == identity])
                return count
            case JoinRequest() | Freeze() | Thaw() | HandOff():  # handle, _migrating take them
                pass
            case _:
                assert_never(message)
        return None

    def pong(self, connection: ConnectionActor, nonce: str | None) -> None:
        """Answer a client's ping at once, outside the mailbox, so that a join storm queued
        there does not delay it (it only reads the roster and mints a binding token)."""
        if not self.lost:
            self._participants.pong(connection, nonce)

    def _count(self) -> None:
        """Report a change of the roster's size (called right after each add/remove)."""
        delta = len(self.roster) - self.counted_participants
        if delta:
            self.counted_participants += delta
            if self._on_participants is not None:
                self._on_participants(self, delta)

    def _watch_empty(self) -> None:
        """Arm the empty timer while nobody is connected, cancel it once someone is."""
        if self._participants.connections:
            self._disarm_empty()
        elif self._empty_timer is None:
            epoch = next(self._empty_epochs)
            timer = asyncio.get_running_loop().call_later(
                self._empty_timeout, self._empty_due, epoch
            )
            self._empty_timer = (epoch, timer)

    def _disarm_empty(self) -> None:
        if self._empty_timer is not None:
            self._empty_timer[1].cancel()
            self._empty_timer = None

    def _empty_due(self, epoch: int) -> None:
        with contextlib.suppress(ActorStopped):
            self.send(EmptyExpired(epoch))

    def _flush_later(self, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self._flush_due)

    def _flush_due(self) -> None:
        with contextlib.suppress(ActorStopped):
            self.send(FlushUpdates())

    def _grace_due(self, participant_id: str, epoch: int) -> None:
        with contextlib.suppress(ActorStopped):
            self.send(GraceExpired(participant_id, epoch))

    # -- live migration (handoff.py) -------------------------------------------------------

    def _migrating(
        self, message: MeetingMessage
    ) -> Exception | JoinRefusal | list[Traveller] | int | _Apply | None:
        """A migration message, or any message while frozen: `_APPLY` to handle it as usual,
        else the answer (see `handoff.while_frozen`)."""
        action = while_frozen(message)
        if not self.frozen and action is not FrozenAction.FREEZE:
            return None  # a Thaw or HandOff without a Freeze: nothing to do
        match action:
            case FrozenAction.FREEZE:
                self.frozen = True
                self._disarm_empty()
                return travellers(self._participants)
            case FrozenAction.THAW:
                self.frozen = False
                return None
            case FrozenAction.HAND_OFF:
                assert isinstance(message, HandOff)
                redirected = hand_off(self._participants, self._tokens, message)
                self.end_reason = MIGRATED
                self._participants.connections.close_all(self.children, LeaveReason.MOVED)
                self.request_stop()
                log.info(
                    "meeting %s handed off: %d clients redirected to %s",
                    self.meeting_id,
                    redirected,
                    message.signaling_url,
                )
                return redirected
            case FrozenAction.REFUSE_JOIN:
                return UNAVAILABLE
            case FrozenAction.CLOSE:
                assert isinstance(message, ClientFrame | ConnectionLost)
                close_quietly(self._participants, message)
                return None
            case FrozenAction.END:
                self.frozen = False
                return _APPLY
            case FrozenAction.APPLY:
                return _APPLY
            case FrozenAction.DROP:
                return StoreUnavailable(f"meeting {self.meeting_id} is moving to another MC")
        return None

    # -- the end ---------------------------------------------------------------------------

    async def _end(self, reason: str) -> None:
        self._participants.connections.close_all(self.children, LeaveReason.MEETING_ENDED)
        self.end_reason = reason
        self.request_stop()
        await self._store.fenced_delete(self.lease)
        await self._events.ended(self.roster, reason)

    def _fenced_out(self, exc: FencedOut) -> None:
        FENCED_OUT.inc()
        log.warning(
            "meeting %s fenced out at generation %d (now generation %s, owner %s): stopping",
            self.meeting_id,
            self.lease.generation,
            exc.stored_generation,
            exc.stored_owner,
        )
        self.end_reason = "fenced_out"
        self._participants.connections.close_all(self.children, LeaveReason.MOVED)
        self.request_stop()

    def child_exited(self, child: Actor[Any], exc: BaseException | None) -> None:
        if exc is not None:
            log.warning("meeting %s: connection %s crashed", self.meeting_id, child.name)
        if isinstance(child, ConnectionActor) and self._participants.connections.is_current(child):
            # Ended without the meeting closing it (a crash): its participant is disconnected.
            with contextlib.suppress(ActorStopped):
                self.send(ConnectionLost(child))
