"""MeetingActor: one per hosted meeting, child of the MeetingControllerActor.

It holds the meeting's fencing generation and is the only writer of the meeting's Redis state
on this MC. Every write is fenced; a refused write (FencedOut) means another MC owns the
meeting now: the actor counts it (`mc_fenced_out_total`), tells each client it moved (a
`participant_left` with the client's own id, reason `moved`), and stops, releasing its
children. A Redis outage is not a loss of ownership: the actor keeps the meeting, carries on
from memory and rewrites the roster at the next touch that reaches Redis.

Participants (see `roster.py` for the Redis layout and the host rule):

* `JoinRequest` admits a client: a new participant (refused when the MC is at its participant
  limit), or a reconnect (correlation id + binding token, checked by `SessionBinder`, and the
  fresh join token's user must be the participant's). A join without a resumable session by
  a user whose entry is disconnected takes that entry back (`roster.seat_to_reclaim`): the
  same participant id and host role, answered as a reconnect, no departure announced. The
  actor starts the client's ConnectionActor as its child and queues the `join_answer` on it
  before anything else.
* A connection that drops without `leave` (`ConnectionLost`) marks its participant
  disconnected; the participant stays for the grace period (a timer here), then is removed
  (`participant_left`, reason `timeout`). `leave` removes at once (`voluntary`).
* When the last participant is gone for good the meeting ends (fenced delete; the controller
  reports it to the GC).
* On start — including after a failover to this MC — the roster is loaded from Redis; the old
  MC's participants are kept as disconnected with a fresh grace period, so that their clients
  can reconnect here with their binding tokens.

Replies: `handle` returns None on success, a `JoinRefused` for a refused join, or the exception
(FencedOut, StoreUnavailable) so that a refusal reaches the asker without crashing the actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from darktower.actors import Actor, ActorStopped
from darktower.auth.join_tokens import JoinClaims
from darktower.common.clock import now_ms
from darktower.fencing import FencedOut, FencedStore, FencingError, Lease, StoreUnavailable
from darktower.mc.binding import InvalidBinding, SessionBinder
from darktower.mc.connection import Close, ConnectionActor, Deliver
from darktower.mc.metrics import BINDING_REFUSALS, FENCED_OUT
from darktower.mc.roster import (
    HOST_FIELD,
    PARTICIPANT_PREFIX,
    Member,
    Roster,
    new_participant_id,
    participant_field,
    uuid7,
)
from darktower.mc.validation import MhTarget, mh_list_json
from darktower.signaling.protocol import (
    ErrorCode,
    ErrorMsg,
    HostMute,
    JoinAnswer,
    Leave,
    LeaveReason,
    Muted,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantUpdated,
    Ping,
    Pong,
    SelfMute,
    encode,
)

__all__ = [
    "AttachConnection",
    "ClientFrame",
    "ConnectionLost",
    "EndMeeting",
    "JoinRefused",
    "JoinRequest",
    "MeetingActor",
    "Touch",
    "UpdateMhs",
]

log = logging.getLogger(__name__)

# The end reason of a meeting whose last participant left for good (reported to the GC).
LAST_PARTICIPANT_LEFT = "last_participant_left"


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
    """Start a connection under this meeting without a participant (tests, tooling)."""

    connection: ConnectionActor


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """Admit `connection` for the verified join token `claims`; a reconnect when
    `correlation_id` and `binding_token` are given. Answers None or a JoinRefused."""

    claims: JoinClaims
    connection: ConnectionActor
    correlation_id: str | None = None
    binding_token: str | None = None


@dataclass(frozen=True, slots=True)
class JoinRefused:
    """What the client is told (`code`, `message`) and the metric label (`reason`)."""

    code: ErrorCode
    message: str
    reason: str


@dataclass(frozen=True, slots=True)
class ClientFrame:
    """A frame from an admitted client (everything but `join`)."""

    connection: ConnectionActor
    message: SelfMute | HostMute | Leave | Ping


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    """The client's transport closed (without `leave`, or after it)."""

    connection: ConnectionActor


@dataclass(frozen=True, slots=True)
class GraceExpired:
    participant_id: str
    epoch: int


MeetingMessage = (
    UpdateMhs
    | Touch
    | EndMeeting
    | AttachConnection
    | JoinRequest
    | ClientFrame
    | ConnectionLost
    | GraceExpired
)

_UNAVAILABLE = JoinRefused(
    ErrorCode.MEETING_UNAVAILABLE, "the meeting is not available on this controller", "moved"
)
_STORE_DOWN = JoinRefused(
    ErrorCode.MEETING_UNAVAILABLE, "the meeting state is unavailable, try again", "store"
)
_AT_CAPACITY = JoinRefused(
    ErrorCode.MEETING_UNAVAILABLE, "this controller is at capacity", "at_capacity"
)
_NO_CLIENTS = JoinRefused(
    ErrorCode.MEETING_UNAVAILABLE, "client signaling is not enabled", "disabled"
)
_EXPIRED = JoinRefused(
    ErrorCode.SESSION_EXPIRED, "the session ended; join again without it", "session_expired"
)
_BAD_BINDING = JoinRefused(ErrorCode.INVALID_BINDING, "invalid binding token", "invalid_binding")


class MeetingActor(Actor[MeetingMessage]):
    actor_type = "meeting"
    mailbox_warning = 100
    mailbox_critical = 500

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
    ) -> None:
        """`binder` None: no clients are admitted. `admit()` says whether the MC can take
        one more participant (read at each new join). `on_participants(self, delta)` is
        called synchronously whenever the roster's size changes (the controller's totals)."""
        super().__init__(lease.meeting_id)
        self.meeting_id = lease.meeting_id
        self.lease = lease  # (meeting, owner, generation) of every fenced write
        self.mhs = mhs
        self._store = store
        self._binder = binder
        self._grace_seconds = grace_seconds
        self._admit = admit
        self._on_participants = on_participants
        self.roster = Roster()
        # The roster size last reported through on_participants.
        self.counted_participants = 0
        self._connections: dict[str, ConnectionActor] = {}  # participant id → its connection
        self._timers: dict[str, tuple[int, asyncio.TimerHandle]] = {}
        self._epochs = itertools.count(1)
        self._resync = False  # a roster write failed: rewrite it all at the next touch
        # Why the actor ended: "fenced_out", or the EndMeeting reason; None while it runs or
        # when it was stopped with the process.
        self.end_reason: str | None = None

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
        try:
            await self._take_over_roster()
        except FencedOut as exc:
            self._fenced_out(exc)
        except FencingError as exc:
            log.warning("meeting %s: roster not loaded (%s)", self.meeting_id, exc.code)

    async def on_stop(self) -> None:
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    async def _take_over_roster(self) -> None:
        record = await self._store.read(self.meeting_id)
        roster, bad = Roster.from_state(record.state)
        if bad:
            log.warning("meeting %s: unreadable roster fields %s", self.meeting_id, bad)
        if not roster.members:
            return
        now = now_ms()
        for member in roster.members.values():
            member.connected, member.disconnected_at_ms = False, now
        self.roster = roster
        self._count()
        self._start_graces(roster.members)
        await self._write(self._roster_mapping())
        log.info(
            "meeting %s: %d participants carried over, disconnected for %.0f s of grace",
            self.meeting_id,
            len(roster),
            self._grace_seconds,
        )

    # -- messages --------------------------------------------------------------------------

    async def handle(self, message: MeetingMessage) -> Exception | JoinRefused | None:
        joining = isinstance(message, JoinRequest)
        if self.lost:
            return _UNAVAILABLE if joining else FencedOut(self.meeting_id, None, None)
        try:
            return await self._apply(message)
        except FencedOut as exc:
            self._fenced_out(exc)
            return _UNAVAILABLE if joining else exc
        except StoreUnavailable as exc:
            log.warning("meeting %s: redis unavailable, keeping the meeting", self.meeting_id)
            return _STORE_DOWN if joining else exc
        except FencingError as exc:
            log.error("meeting %s: %s", self.meeting_id, exc)
            return _STORE_DOWN if joining else exc

    async def _apply(self, message: MeetingMessage) -> JoinRefused | None:
        if isinstance(message, JoinRequest):
            return await self._join(message)
        if isinstance(message, ClientFrame):
            await self._client_frame(message.connection, message.message)
        elif isinstance(message, ConnectionLost):
            await self._connection_lost(message.connection)
        elif isinstance(message, GraceExpired):
            timer = self._timers.get(message.participant_id)
            if timer is not None and timer[0] == message.epoch:  # not a cancelled grace
                await self._remove(message.participant_id, LeaveReason.TIMEOUT)
        elif isinstance(message, UpdateMhs):
            await self._store.fenced_set(self.lease, "mh", mh_list_json(message.mhs, now_ms()))
            self.mhs = message.mhs
        elif isinstance(message, Touch):
            await self._touch()
        elif isinstance(message, EndMeeting):
            await self._end(message.reason)
        else:
            self.spawn(message.connection)
        return None

    # -- joins -----------------------------------------------------------------------------

    async def _join(self, request: JoinRequest) -> JoinRefused | None:
        if self._binder is None:
            return _NO_CLIENTS
        try:
            return await self._admit_or_refuse(self._binder, request)
        except ActorStopped:
            # The MC is stopping this meeting (its own stop, not a loss): the client goes
            # elsewhere; a participant already written stays, disconnected, for its grace.
            return _UNAVAILABLE

    async def _admit_or_refuse(
        self, binder: SessionBinder, request: JoinRequest
    ) -> JoinRefused | None:
        if not self._accepting:  # stopping: the join could not get its connection started
            return _UNAVAILABLE
        if request.correlation_id is None or request.binding_token is None:
            return await self._join_new(request.claims, request.connection)
        return await self._rejoin(binder, request)

    async def _join_new(
        self, claims: JoinClaims, connection: ConnectionActor
    ) -> JoinRefused | None:
        ghost = self.roster.seat_to_reclaim(claims.user_id)
        if ghost is not None:
            await self._reclaim(ghost, claims, connection)
            return None
        if not self._admit():
            return _AT_CAPACITY
        participant_id = new_participant_id()
        while participant_id in self.roster.members:  # 48 random bits: practically never
            participant_id = new_participant_id()
        member = Member(
            participant_id=participant_id,
            user_id=claims.user_id,
            display_name=claims.display_name,
            correlation_id=str(uuid7()),
            joined_at_ms=now_ms(),
        )
        # In the roster before the write: the seat counts for admission from now on.
        self.roster.add(member)
        self._count()
        mapping = {participant_field(participant_id): member.to_json()}
        if self.roster.host_id == participant_id:
            mapping[HOST_FIELD] = participant_id
        try:
            written = await self._write(mapping)
        except FencingError:
            self.roster.remove(participant_id)
            self._count()
            raise
        if not written:
            self.roster.remove(participant_id)
            self._count()
            return _STORE_DOWN
        self._admit_connection(member, connection, reconnected=False)
        self._broadcast(ParticipantJoined(participant=member.public()), exclude=participant_id)
        return None

    async def _rejoin(self, binder: SessionBinder, request: JoinRequest) -> JoinRefused | None:
        assert request.correlation_id is not None and request.binding_token is not None
        member = self.roster.by_correlation(request.correlation_id)
        if member is None:
            return _EXPIRED
        participant_id = member.participant_id
        try:
            await binder.verify(
                request.binding_token,
                meeting_id=self.meeting_id,
                correlation_id=request.correlation_id,
                participant_id=participant_id,
            )
        except InvalidBinding as exc:
            BINDING_REFUSALS.labels(exc.reason.value).inc()
            log.info("meeting %s: reconnect refused (%s)", self.meeting_id, exc.reason)
            return _BAD_BINDING
        if request.claims.user_id != member.user_id:
            BINDING_REFUSALS.labels("other_user").inc()
            log.info("meeting %s: reconnect refused (other_user)", self.meeting_id)
            return _BAD_BINDING
        await self._resume(member, request.connection)
        return None

    async def _reclaim(
        self, member: Member, claims: JoinClaims, connection: ConnectionActor
    ) -> None:
        """A fresh join by the user of the disconnected `member` takes its seat back (see
        `roster.seat_to_reclaim`). It is a new session: a new correlation id, so binding tokens
        of the old one resume nothing any more; the name is the join token's."""
        log.info(
            "meeting %s: a fresh join took back participant %s (binding not resumable)",
            self.meeting_id,
            member.participant_id,
        )
        member.correlation_id = str(uuid7())
        member.display_name = claims.display_name
        await self._resume(member, connection)

    async def _resume(self, member: Member, connection: ConnectionActor) -> None:
        """`member` is back on `connection`: its grace ends, a connection it still had is hung
        up, it gets a `join_answer` with `reconnected` and the others a `participant_updated`.
        A write that does not reach Redis (not fenced out) is carried over to the next touch:
        the participant was in the roster already, so no seat is at stake."""
        participant_id = member.participant_id
        replaced = self._connections.pop(participant_id, None)
        if replaced is not None:
            self._send(replaced, Close(None))
        self._cancel_grace(participant_id)
        was_connected = member.connected
        member.connected, member.disconnected_at_ms = True, None
        await self._write({participant_field(participant_id): member.to_json()})
        self._admit_connection(member, connection, reconnected=True)
        if not was_connected:
            self._broadcast(ParticipantUpdated(participant=member.public()), exclude=participant_id)

    def _admit_connection(
        self, member: Member, connection: ConnectionActor, *, reconnected: bool
    ) -> None:
        assert self._binder is not None
        connection.participant_id = member.participant_id
        self.spawn(connection)  # ActorStopped while this meeting is stopping
        self._connections[member.participant_id] = connection
        answer = JoinAnswer(
            participant_id=member.participant_id,
            correlation_id=member.correlation_id,
            binding_token=self._binder.mint(
                self.meeting_id, member.correlation_id, member.participant_id
            ),
            roster=self.roster.participants(),
            host_id=self.roster.host_id,
            reconnected=reconnected,
        )
        # The first frame in its mailbox: nothing of the meeting can overtake the answer.
        self._send(connection, Deliver(encode(answer)))

    # -- admitted clients ------------------------------------------------------------------

    async def _client_frame(
        self, connection: ConnectionActor, message: SelfMute | HostMute | Leave | Ping
    ) -> None:
        participant_id = connection.participant_id
        member = self.roster.get(participant_id)
        if member is None or self._connections.get(participant_id) is not connection:
            return  # a connection already replaced or removed: its frames no longer count
        if isinstance(message, Ping):
            assert self._binder is not None
            fresh = self._binder.mint(self.meeting_id, member.correlation_id, participant_id)
            self._send(connection, Deliver(encode(Pong(nonce=message.nonce, binding_token=fresh))))
        elif isinstance(message, Leave):
            await self._remove(participant_id, LeaveReason.VOLUNTARY)
        elif isinstance(message, SelfMute):
            member.muted = message.muted
            await self._write({participant_field(participant_id): member.to_json()})
            self._broadcast(ParticipantUpdated(participant=member.public()))
        else:
            await self._host_mute(connection, message)

    async def _host_mute(self, connection: ConnectionActor, message: HostMute) -> None:
        host_id = connection.participant_id
        if self.roster.host_id != host_id:
            self._error(connection, ErrorCode.NOT_HOST, "only the meeting's host may mute others")
            return
        target = self.roster.get(message.participant_id)
        if target is None:
            self._error(connection, ErrorCode.UNKNOWN_PARTICIPANT, "no such participant")
            return
        target.host_muted = message.muted
        await self._write({participant_field(target.participant_id): target.to_json()})
        target_connection = self._connections.get(target.participant_id)
        if target_connection is not None:
            muted = Muted(participant_id=target.participant_id, muted=message.muted, by=host_id)
            self._send(target_connection, Deliver(encode(muted)))
        self._broadcast(ParticipantUpdated(participant=target.public()))

    async def _connection_lost(self, connection: ConnectionActor) -> None:
        participant_id = connection.participant_id
        if self._connections.get(participant_id) is not connection:
            connection.request_stop()
            return
        del self._connections[participant_id]
        connection.request_stop()
        member = self.roster.get(participant_id)
        if member is None:
            return
        member.connected, member.disconnected_at_ms = False, now_ms()
        self._start_graces([participant_id])
        await self._write({participant_field(participant_id): member.to_json()})
        self._broadcast(ParticipantUpdated(participant=member.public()))

    async def _remove(self, participant_id: str, reason: LeaveReason) -> None:
        """The participant leaves for good; the last one out ends the meeting."""
        self._cancel_grace(participant_id)
        connection = self._connections.pop(participant_id, None)
        if connection is not None:
            self._send(connection, Close(reason))
        host_changed = self.roster.remove(participant_id)
        self._count()
        if not self.roster.members:
            await self._end(LAST_PARTICIPANT_LEFT)
            return
        mapping = {HOST_FIELD: self.roster.host_id} if host_changed and self.roster.host_id else {}
        await self._write(mapping, remove=[participant_field(participant_id)])
        left = ParticipantLeft(
            participant_id=participant_id, reason=reason, host_id=self.roster.host_id
        )
        self._broadcast(left)

    def _count(self) -> None:
        """Report a change of the roster's size (call right after each add/remove)."""
        delta = len(self.roster) - self.counted_participants
        if delta:
            self.counted_participants += delta
            if self._on_participants is not None:
                self._on_participants(self, delta)

    # -- grace timers ----------------------------------------------------------------------

    def _start_graces(self, participant_ids: Iterable[str]) -> None:
        loop = asyncio.get_running_loop()
        for participant_id in participant_ids:
            self._cancel_grace(participant_id)
            epoch = next(self._epochs)
            timer = loop.call_later(self._grace_seconds, self._grace_due, participant_id, epoch)
            self._timers[participant_id] = (epoch, timer)

    def _cancel_grace(self, participant_id: str) -> None:
        entry = self._timers.pop(participant_id, None)
        if entry is not None:
            entry[1].cancel()

    def _grace_due(self, participant_id: str, epoch: int) -> None:
        with contextlib.suppress(ActorStopped):
            self.send(GraceExpired(participant_id, epoch))

    # -- Redis -----------------------------------------------------------------------------

    async def _write(self, mapping: Mapping[str, str], *, remove: Iterable[str] = ()) -> bool:
        """A fenced roster write. FencedOut propagates (the meeting is lost); any other store
        failure is logged and answered False, and the whole roster is rewritten at the next
        touch that reaches Redis."""
        try:
            await self._store.fenced_hset(self.lease, mapping, remove=remove)
        except FencedOut:
            raise
        except FencingError as exc:
            self._resync = True
            log.warning("meeting %s: roster write failed (%s)", self.meeting_id, exc.code)
            return False
        return True

    def _roster_mapping(self) -> dict[str, str]:
        mapping = {participant_field(p): m.to_json() for p, m in self.roster.members.items()}
        if self.roster.host_id is not None:
            mapping[HOST_FIELD] = self.roster.host_id
        return mapping

    async def _touch(self) -> None:
        mapping = {"touched_at_ms": str(now_ms())}
        if not self._resync:
            await self._store.fenced_hset(self.lease, mapping)
            return
        stored = (await self._store.read(self.meeting_id)).state
        stale = [
            name
            for name in stored
            if name.startswith(PARTICIPANT_PREFIX)
            and name[len(PARTICIPANT_PREFIX) :] not in self.roster.members
        ]
        if self.roster.host_id is None and HOST_FIELD in stored:
            stale.append(HOST_FIELD)
        await self._store.fenced_hset(self.lease, mapping | self._roster_mapping(), remove=stale)
        self._resync = False

    async def _end(self, reason: str) -> None:
        self._close_connections(LeaveReason.MEETING_ENDED)
        self.end_reason = reason
        self.request_stop()
        await self._store.fenced_delete(self.lease)

    # -- fan-out ---------------------------------------------------------------------------

    def _send(self, connection: ConnectionActor, message: Deliver | Close) -> None:
        with contextlib.suppress(ActorStopped):
            connection.send(message)

    def _error(self, connection: ConnectionActor, code: ErrorCode, text: str) -> None:
        self._send(connection, Deliver(encode(ErrorMsg(code=code, message=text))))

    def _broadcast(self, message: Any, *, exclude: str | None = None) -> None:
        """One encoding, delivered to every admitted connection but `exclude`'s."""
        frame = Deliver(encode(message))
        for participant_id, connection in list(self._connections.items()):
            if participant_id != exclude:
                self._send(connection, frame)

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
        self._close_connections(LeaveReason.MOVED)
        self.request_stop()

    def _close_connections(self, reason: LeaveReason) -> None:
        self._connections.clear()
        for child in self.children:
            if isinstance(child, ConnectionActor) and child.running:
                self._send(child, Close(reason))

    def child_exited(self, child: Actor[Any], exc: BaseException | None) -> None:
        if exc is not None:
            log.warning("meeting %s: connection %s crashed", self.meeting_id, child.name)
        if (
            isinstance(child, ConnectionActor)
            and self._connections.get(child.participant_id) is child
        ):
            # Ended without the meeting closing it (a crash): its participant is disconnected.
            with contextlib.suppress(ActorStopped):
                self.send(ConnectionLost(child))
