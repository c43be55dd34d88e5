"""Participants: the meeting's people — their roster, their connections, their grace.

It carries out what happens to participants: a join as `decide_join` says (a new participant,
a resumed session, a reclaimed seat, or a refusal), a client's frames (ping, mute, host mute,
leave), a dropped connection (disconnected, grace starts) and a departure for good (the host
rule of `roster.py`). Every roster change is written through `RosterSync` and told to the
other clients through `Connections`.

The meeting actor owns it and calls it one message at a time; it gives it four hooks: `spawn`
(start a connection under the meeting), `expire` (a grace timer ran out: queue it to the
meeting), `on_count` (the roster's size changed) and `flush_later` (queue a `FlushUpdates`
after the coalescing window). A departure that empties the roster answers True: the meeting
ends (the actor does that). Store errors propagate.

A new participant beyond `MeetingLimits.max_participants` is refused `meeting_full`. A
participant's self_mute flips are coalesced: the first is written and broadcast at once and
opens a window of `MeetingLimits.coalesce_seconds`; later flips in the window only change the
member in memory; when it closes (`flush`), the member is written and broadcast once more if
its value differs from the one last told — one fenced write and one broadcast per window, not
one per frame, the last value winning.

The meeting API (`RemoveIdentity`, `MuteIdentity`): a removal takes every participant of the
identity out (`participant_left{removed}`), records `removed:<identity>` in the meeting's
state and refuses every later join of that identity (`removed`) for as long as the meeting
lives — also on an MC that takes the meeting over. A removal that empties the roster does not
end the meeting (the empty timeout does), so the record outlives the kick. An API mute is a
host mute with `by: "api"`. `metadata` (the meeting's settings) goes into every `join_answer`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import assert_never

from darktower.actors import ActorStopped
from darktower.auth.join_tokens import JoinClaims
from darktower.common.clock import now_ms
from darktower.fencing import StoreUnavailable
from darktower.mc.connection import Close, ConnectionActor
from darktower.mc.meeting.events import MeetingEvents
from darktower.mc.meeting.fanout import Connections, send
from darktower.mc.meeting.grace import GraceTimers
from darktower.mc.meeting.join import (
    NO_CLIENTS,
    STORE_DOWN,
    UNAVAILABLE,
    Fresh,
    JoinRefusal,
    Reclaim,
    Refuse,
    Resume,
    decide_join,
)
from darktower.mc.meeting.limits import MEETING_FULL, MeetingLimits
from darktower.mc.meeting.messages import JoinRequest
from darktower.mc.meeting.roster_sync import RosterSync
from darktower.mc.meeting.seats import Seats, announcements, new_member
from darktower.mc.meeting.sessions import SessionTokens
from darktower.mc.metrics import BINDING_REFUSALS, STATE_UPDATES_COALESCED
from darktower.mc.roster import (
    HOST_FIELD,
    REMOVED_PREFIX,
    Member,
    Roster,
    participant_field,
    uuid7,
)
from darktower.signaling.protocol import (
    ErrorCode,
    HostMute,
    JoinAnswer,
    Leave,
    LeaveReason,
    MediaGrant,
    Muted,
    ParticipantLeft,
    ParticipantUpdated,
    Ping,
    SelfMute,
)

__all__ = ["Participants"]

log = logging.getLogger(__name__)

REMOVED = JoinRefusal(ErrorCode.REMOVED, "removed from this meeting", "removed")
# The `by` of a mute made through the meeting API (a host's is its participant id).
API_MUTER = "api"
# Join answers of a batch given between two turns of the event loop.
ANSWERS_PER_STEP = 8


class Participants:
    __slots__ = (
        "_admit",
        "_events",
        "_flush_later",
        "_limits",
        "_media",
        "_media_left",
        "_meeting_id",
        "_on_count",
        "_spawn",
        "_sync",
        "_tokens",
        "_told_muted",
        "connections",
        "graces",
        "metadata",
        "removed",
        "roster",
        "stored_state",
    )

    def __init__(
        self,
        meeting_id: str,
        *,
        sync: RosterSync,
        tokens: SessionTokens | None,
        grace_seconds: float,
        admit: Callable[[], bool],
        spawn: Callable[[ConnectionActor], object],
        expire: Callable[[str, int], None],
        on_count: Callable[[], None],
        limits: MeetingLimits | None = None,
        flush_later: Callable[[float], None] = lambda _delay: None,
        events: MeetingEvents | None = None,
        media: Callable[[str], Awaitable[list[MediaGrant]]] | None = None,
        media_left: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """`tokens` None: client signaling is disabled, every join is refused. `admit()` says
        whether the MC can take one more participant (read at each join). `events`: the
        webhook outbox of the meeting (joins and departures are recorded there). `media`:
        a participant id → its media grants, put into its join answer (`darktower.mc.media`);
        `media_left`: called with the id of a participant who left for good (tokens revoked)."""
        self._events = events
        self._media = media
        self._media_left = media_left
        self._limits = limits or MeetingLimits()
        self._flush_later = flush_later
        # Participants inside a coalescing window → the self_mute value the others were told.
        self._told_muted: dict[str, bool] = {}
        self._meeting_id = meeting_id
        self._sync = sync
        self._tokens = tokens
        self._admit = admit
        self._spawn = spawn
        self._on_count = on_count
        self.roster = Roster()
        self.connections = Connections(
            batch_seconds=self._limits.roster_batch_seconds, host=lambda: self.roster.host_id
        )
        self.graces = GraceTimers(grace_seconds, expire)
        self.metadata: str | None = None  # the meeting's, sent in each join_answer
        self.removed: set[str] = set()  # identities removed through the meeting API
        # The meeting's state hash as `take_over` found it (the actor reads its settings).
        self.stored_state: dict[str, str] = {}

    @property
    def limits(self) -> MeetingLimits:
        return self._limits

    @limits.setter
    def limits(self, limits: MeetingLimits) -> None:
        self._limits = limits
        self.connections.batch_seconds = limits.roster_batch_seconds

    async def take_over(self) -> None:
        """Load the roster a previous owner left in Redis: its participants stay, disconnected
        with a fresh grace, so that their clients can reconnect here with their tokens."""
        self.stored_state = state = await self._sync.load_state()
        self.removed = {
            name[len(REMOVED_PREFIX) :] for name in state if name.startswith(REMOVED_PREFIX)
        }
        roster, bad = Roster.from_state(state)
        if bad:
            log.warning("meeting %s: unreadable roster fields %s", self._meeting_id, bad)
        if not roster.members:
            return
        now = now_ms()
        for member in roster.members.values():
            member.connected, member.disconnected_at_ms = False, now
        self.roster = roster
        self._on_count()
        self.graces.start(roster.members)
        await self._sync.write_all(roster)
        log.info(
            "meeting %s: %d participants carried over, disconnected for %.0f s of grace",
            self._meeting_id,
            len(roster),
            self.graces.seconds,
        )

    # -- joins -----------------------------------------------------------------------------

    async def join_batch(
        self,
        requests: Sequence[JoinRequest],
        answers: dict[int, JoinRefusal | None],
        *,
        stopping: bool,
    ) -> None:
        """Admit or refuse each of `requests` in turn, answers[i] for requests[i] once it is
        decided; the new participants among consecutive requests are recorded by one fenced
        write (`seats.py`). Store errors propagate (reserved seats taken back): the requests
        without an answer then were neither admitted nor told anything."""
        if self._tokens is None:
            answers.update(dict.fromkeys(range(len(requests)), NO_CLIENTS))
            return
        tokens, seats = self._tokens, Seats(self.roster, self._on_count)
        try:
            for index, request in enumerate(requests):
                if stopping or request.claims.user_id in self.removed:
                    # Stopping: the join could not get its connection started.
                    answers[index] = UNAVAILABLE if stopping else REMOVED
                    continue
                if request.correlation_id is not None:  # checked against recorded seats only
                    await self._record(tokens, seats, answers)
                reconnect = await tokens.check(request, self.roster)
                members, host_id = self.roster.members.values(), self.roster.host_id
                decision = decide_join(
                    request.claims.user_id, reconnect, members, host_id, has_room=self._admit()
                )
                if not isinstance(decision, Fresh):
                    await self._record(tokens, seats, answers)
                    answers[index] = await self._carry_out(tokens, decision, request)
                elif len(self.roster) >= self._limits.max_participants:
                    answers[index] = MEETING_FULL
                else:
                    seats.reserve(
                        new_member(request.claims, self.roster), request.connection, index
                    )
            await self._record(tokens, seats, answers)
        finally:
            seats.rollback()  # an error before they were written: none of them stays

    async def _carry_out(
        self, tokens: SessionTokens, decision: Resume | Reclaim | Refuse, request: JoinRequest
    ) -> JoinRefusal | None:
        """A join that takes no new seat: a resumed session, a reclaimed seat, a refusal."""
        members = self.roster.members
        try:
            match decision:
                case Resume(participant_id):
                    await self._resume(tokens, members[participant_id], request.connection)
                case Reclaim(participant_id):
                    member = members[participant_id]
                    await self._reclaim(tokens, member, request.claims, request.connection)
                case Refuse(refusal, binding_reason):
                    if binding_reason is not None:
                        BINDING_REFUSALS.labels(binding_reason).inc()
                        log.info(
                            "meeting %s: reconnect refused (%s)", self._meeting_id, binding_reason
                        )
                    return refusal
                case _:
                    assert_never(decision)
        except ActorStopped:
            # The MC is stopping this meeting (its own stop, not a loss): the client goes
            # elsewhere; a participant already written stays, disconnected, for its grace.
            return UNAVAILABLE
        return None

    async def _record(
        self, tokens: SessionTokens, seats: Seats, answers: dict[int, JoinRefusal | None]
    ) -> None:
        """Write the reserved `seats` (one fenced write), then tell their joiners; a write that
        does not reach Redis takes them back and refuses them `STORE_DOWN`."""
        if not seats:
            return
        if not await self._sync.write(seats.mapping()):  # FencedOut: join_batch rolls back
            answers.update(dict.fromkeys((s.index for s in seats.seats), STORE_DOWN))
            seats.rollback()
            return
        taken = seats.take()
        # Recorded before the clients hear of their seats: a join answer means a recorded event.
        if self._events is not None:
            await self._events.joined(*(seat.member for seat in taken))
        # One roster for every answer of the batch: each joiner learns of the others of its
        # batch from it, so the announcements below skip them.
        roster, metadata = self.roster.participants(), self.metadata
        for k, seat in enumerate(taken, 1):
            if k % ANSWERS_PER_STEP == 0:  # a pong waits for a few answers, not the batch
                await asyncio.sleep(0)
            answer = tokens.join_answer(
                seat.member, self.roster, reconnected=False, metadata=metadata, participants=roster
            )
            try:
                self._admit_connection(await self._with_media(answer), seat.connection)
                answers[seat.index] = None
            except ActorStopped:
                answers[seat.index] = UNAVAILABLE  # see _carry_out
        for joined, batch in announcements(taken):
            self.connections.announce(joined, exclude=batch)

    async def _reclaim(
        self,
        tokens: SessionTokens,
        member: Member,
        claims: JoinClaims,
        connection: ConnectionActor,
    ) -> None:
        """A fresh join by the user of the disconnected `member` takes its seat back (see
        `roster.seat_to_reclaim`). It is a new session: a new correlation id, so binding tokens
        of the old one resume nothing any more; the name is the join token's."""
        log.info(
            "meeting %s: a fresh join took back participant %s (binding not resumable)",
            self._meeting_id,
            member.participant_id,
        )
        member.correlation_id = str(uuid7())
        member.display_name = claims.display_name
        await self._resume(tokens, member, connection)

    async def _resume(
        self, tokens: SessionTokens, member: Member, connection: ConnectionActor
    ) -> None:
        """`member` is back on `connection`: its grace ends, a connection it still had is hung
        up, it gets a `join_answer` with `reconnected` and the others a `participant_updated`.
        A write that does not reach Redis (not fenced out) is carried over to the next touch:
        the participant was in the roster already, so no seat is at stake."""
        participant_id = member.participant_id
        replaced = self.connections.pop(participant_id)
        if replaced is not None:
            send(replaced, Close(None))
        self.graces.cancel(participant_id)
        was_connected = member.connected
        member.connected, member.disconnected_at_ms = True, None
        await self._sync.write_member(member)
        self._admit_connection(
            await self._with_media(
                tokens.join_answer(member, self.roster, reconnected=True, metadata=self.metadata)
            ),
            connection,
        )
        if not was_connected:
            updated = ParticipantUpdated(participant=member.public())
            self.connections.announce(updated, exclude=(participant_id,))

    async def _with_media(self, answer: JoinAnswer) -> JoinAnswer:
        """`answer` with the participant's media grants (a fresh registration on each MH)."""
        if self._media is None:
            return answer
        grants = await self._media(answer.participant_id)
        return answer.model_copy(update={"media": grants})

    def _admit_connection(self, answer: JoinAnswer, connection: ConnectionActor) -> None:
        """Start `connection` for the participant `answer` admits, and queue the answer."""
        connection.participant_id = answer.participant_id
        self._spawn(connection)  # ActorStopped while the meeting is stopping
        self.connections.add(connection)
        # The first frame in its mailbox: nothing of the meeting can overtake the answer.
        self.connections.answer(connection, answer)

    # -- admitted clients ------------------------------------------------------------------

    async def client_frame(
        self, connection: ConnectionActor, message: SelfMute | HostMute | Leave | Ping
    ) -> bool:
        """Act on a client's frame; True when it was the last participant's `leave`."""
        participant_id = connection.participant_id
        member = self.roster.get(participant_id)
        if member is None or not self.connections.is_current(connection):
            return False  # a connection already replaced or removed: its frames no longer count
        match message:
            case Ping(nonce=nonce):
                self.pong(connection, nonce)
            case Leave():
                return await self.remove(participant_id, LeaveReason.VOLUNTARY)
            case SelfMute(muted=muted):
                await self._self_mute(member, muted)
            case HostMute():
                await self._host_mute(connection, message)
            case _:
                assert_never(message)
        return False

    def pong(self, connection: ConnectionActor, nonce: str | None) -> None:
        """Answer a ping (also straight from the signaling edge: it writes nothing)."""
        member = self.roster.get(connection.participant_id)
        if member and self._tokens and self.connections.is_current(connection):
            self.connections.deliver(connection, self._tokens.pong(member, nonce))

    async def _self_mute(self, member: Member, muted: bool) -> None:
        member.muted = muted
        if member.participant_id in self._told_muted:
            STATE_UPDATES_COALESCED.inc()
            return
        if self._limits.coalesce_seconds > 0:
            if not self._told_muted:
                self._flush_later(self._limits.coalesce_seconds)
            self._told_muted[member.participant_id] = muted
        await self._sync.write_member(member)
        self.connections.announce(ParticipantUpdated(participant=member.public()))

    async def flush(self) -> None:
        """The coalescing window closed: tell each changed self_mute once (last value)."""
        told, self._told_muted = self._told_muted, {}
        for participant_id, muted in told.items():
            member = self.roster.get(participant_id)
            if member is None or member.muted == muted:
                continue
            await self._sync.write_member(member)
            self.connections.announce(ParticipantUpdated(participant=member.public()))

    async def _host_mute(self, connection: ConnectionActor, message: HostMute) -> None:
        host_id = connection.participant_id
        if self.roster.host_id != host_id:
            text = "only the meeting's host may mute others"
            self.connections.error(connection, ErrorCode.NOT_HOST, text)
            return
        target = self.roster.get(message.participant_id)
        if target is None:
            self.connections.error(connection, ErrorCode.UNKNOWN_PARTICIPANT, "no such participant")
            return
        await self._apply_host_mute(target, message.muted, by=host_id)

    async def _apply_host_mute(self, target: Member, muted: bool, *, by: str) -> None:
        target.host_muted = muted
        await self._sync.write_member(target)
        target_connection = self.connections.get(target.participant_id)
        if target_connection is not None:
            told = Muted(participant_id=target.participant_id, muted=muted, by=by)
            self.connections.deliver(target_connection, told)
        self.connections.announce(ParticipantUpdated(participant=target.public()))

    # -- the meeting API -------------------------------------------------------------------

    async def mute_identity(self, identity: str, muted: bool) -> int:
        """Host-mute every participant of `identity` (`by: "api"`); how many there were."""
        targets = [m for m in self.roster.members.values() if m.user_id == identity]
        for target in targets:
            await self._apply_host_mute(target, muted, by=API_MUTER)
        return len(targets)

    async def remove_identity(self, identity: str) -> int:
        """Remove every participant of `identity` and bar it from joining again (see the
        module docstring); how many participants it had. The bar is recorded first: when it
        does not reach Redis, nobody is removed and StoreUnavailable propagates."""
        if not await self._sync.write({f"{REMOVED_PREFIX}{identity}": str(now_ms())}):
            raise StoreUnavailable("the removal was not recorded")
        self.removed.add(identity)
        targets = [m.participant_id for m in self.roster.members.values() if m.user_id == identity]
        for participant_id in targets:
            if await self.remove(participant_id, LeaveReason.REMOVED):
                # The roster is empty: `remove` wrote nothing; the meeting stays (empty timer).
                await self._sync.write({}, remove=[participant_field(participant_id), HOST_FIELD])
        return len(targets)

    async def connection_lost(self, connection: ConnectionActor) -> None:
        """The client's transport closed: its participant is disconnected, its grace starts."""
        participant_id = connection.participant_id
        if not self.connections.is_current(connection):
            connection.request_stop()
            return
        self.connections.pop(participant_id)
        connection.request_stop()
        member = self.roster.get(participant_id)
        if member is None:
            return
        member.connected, member.disconnected_at_ms = False, now_ms()
        self.graces.start([participant_id])
        await self._sync.write_member(member)
        self.connections.announce(ParticipantUpdated(participant=member.public()))

    async def grace_expired(self, participant_id: str, epoch: int) -> bool:
        """A grace timer ran out; True when it removed the last participant."""
        if not self.graces.is_current(participant_id, epoch):  # a cancelled grace
            return False
        return await self.remove(participant_id, LeaveReason.TIMEOUT)

    async def remove(self, participant_id: str, reason: LeaveReason) -> bool:
        """The participant leaves for good. True when it was the last one: the meeting ends,
        nothing is written or told here."""
        self.graces.cancel(participant_id)
        connection = self.connections.pop(participant_id)
        if connection is not None:
            send(connection, Close(reason))
        member = self.roster.get(participant_id)
        host_changed = self.roster.remove(participant_id)
        self._on_count()
        if self._media_left is not None:
            await self._media_left(participant_id)
        if not self.roster.members:
            if member is not None and self._events is not None:
                await self._events.left(member, reason)  # the meeting's end follows
            return True
        mapping = {HOST_FIELD: self.roster.host_id} if host_changed and self.roster.host_id else {}
        await self._sync.write(mapping, remove=[participant_field(participant_id)])
        if member is not None and self._events is not None:
            await self._events.left(member, reason)
        left = ParticipantLeft(
            participant_id=participant_id, reason=reason, host_id=self.roster.host_id
        )
        self.connections.announce(left)
        return False
