"""MeetingControllerActor: the one actor that decides admission and owns the meeting actors.

Admission is a reservation protocol, so that the decision is exact under concurrency while the
Redis work runs outside the actor (in parallel for different meetings):

1. `Reserve(meeting_id)` — decided here, one at a time, by the pure `decide_admission`, counting
   the admissions in flight. Answers `Hosted` (idempotent re-assignment), `Pending` (the same
   meeting is being admitted right now: wait for it, then ask again), `Rejected`, or `Reserved`.
2. The caller takes ownership in Redis and stores the MH list (see `assign.py`).
3. `Commit(...)` starts the MeetingActor, or `Abort(meeting_id)` releases the reservation.

`reserve` and `commit` are the asks of steps 1 and 3 without the trip through the mailbox when
nothing is queued (`Actor.idle`): the controller's handling never awaits, so with an empty
mailbox no message is being handled, and deciding at once is deciding in mailbox order. Behind
queued messages they are ordinary asks. (An assignment paid two mailbox hops for nothing.)

The controller also touches every hosted meeting periodically (a fenced write per meeting), so a
meeting taken over by another MC is noticed even when idle. Each round of touches takes one
`touch_interval` and sends them in batches of `TOUCH_BATCH` spread evenly over it, so that a
thousand meetings never send a thousand Redis calls at the same instant: a hosted meeting is
touched about once per interval, a newly committed one first within two intervals.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from darktower.actors import Actor, ActorStopped
from darktower.common.meeting_settings import MeetingSettings
from darktower.fencing import FencedStore, Lease
from darktower.mc.admission import AdmissionState, Rejection, decide_admission
from darktower.mc.binding import SessionBinder
from darktower.mc.media import MediaRegistrar
from darktower.mc.meeting import EndMeeting, MeetingActor, MeetingLimits, Touch
from darktower.mc.meeting.handoff import MIGRATED
from darktower.mc.metrics import (
    MEETINGS_ACTIVE,
    MEETINGS_ADMITTING,
    MEETINGS_ENDED,
    PARTICIPANTS_ACTIVE,
)
from darktower.mc.validation import MhTarget
from darktower.runtime.supervisor import TaskSupervisor
from darktower.webhooks.outbox import EventSink

__all__ = [
    "Abort",
    "Capacity",
    "Commit",
    "Hosted",
    "MeetingControllerActor",
    "Pending",
    "Rejected",
    "Reserve",
    "Reserved",
    "SetDraining",
]

log = logging.getLogger(__name__)

# Meetings touched together; the batches of one round are spaced evenly over the interval.
TOUCH_BATCH = 16


@dataclass(frozen=True, slots=True)
class Reserve:
    meeting_id: str


@dataclass(frozen=True, slots=True)
class Commit:
    lease: Lease  # as acquired by this MC
    mhs: tuple[MhTarget, ...]
    settings: MeetingSettings | None = None  # the meeting API's, when the assignment had any

    @property
    def meeting_id(self) -> str:
        return self.lease.meeting_id


@dataclass(frozen=True, slots=True)
class Abort:
    meeting_id: str


@dataclass(frozen=True, slots=True)
class SetDraining:
    pass


@dataclass(frozen=True, slots=True)
class EndAll:
    reason: str


ControllerMessage = Reserve | Commit | Abort | SetDraining | EndAll


@dataclass(frozen=True, slots=True)
class Hosted:
    meeting: MeetingActor


@dataclass(frozen=True, slots=True)
class Pending:
    done: asyncio.Future[None]


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: Rejection


@dataclass(frozen=True, slots=True)
class Reserved:
    pass


ReserveResult = Hosted | Pending | Rejected | Reserved


@dataclass(frozen=True, slots=True)
class Capacity:
    """The true counts, for heartbeats and health."""

    max_meetings: int
    current_meetings: int
    max_participants: int
    current_participants: int
    draining: bool


@dataclass(slots=True)
class _Limits:
    max_meetings: int
    max_participants: int
    participant_estimate: int


@dataclass(slots=True)
class _Admitting:
    futures: dict[str, asyncio.Future[None]] = field(default_factory=dict)


class MeetingControllerActor(Actor[ControllerMessage]):
    actor_type = "controller"
    mailbox_warning = 1000
    mailbox_critical = 5000

    def __init__(
        self,
        mc_id: str,
        *,
        store: FencedStore,
        max_meetings: int,
        max_participants: int,
        participant_estimate: int,
        is_ready: Callable[[], bool],
        touch_interval: float = 5.0,
        on_meeting_ended: Callable[[str, str], None] | None = None,
        binder: SessionBinder | None = None,
        disconnect_grace_seconds: float = 30.0,
        tasks: TaskSupervisor | None = None,
        meeting_limits: MeetingLimits | None = None,
        events: EventSink | None = None,
        media: MediaRegistrar | None = None,
    ) -> None:
        """`media`: registers admitted participants with their meetings' MHs (None: no media
        grants). `binder` None: the meetings admit no clients (client signaling disabled). `tasks`
        runs the touch loop (task `touch-loop`; a private supervisor if None).
        `meeting_limits`: each meeting's empty timeout, participant cap and coalescing."""
        super().__init__(mc_id)
        self.mc_id = mc_id
        self._store = store
        self._limits = _Limits(max_meetings, max_participants, participant_estimate)
        self._is_ready = is_ready
        self._touch_interval = touch_interval
        self._on_meeting_ended = on_meeting_ended
        self._binder = binder
        self._grace_seconds = disconnect_grace_seconds
        self._meeting_limits = meeting_limits or MeetingLimits()
        self._events = events  # the webhook outbox the meetings record their events in
        self._media = media
        self._meetings: dict[str, MeetingActor] = {}
        # Sum of counted_participants over self._meetings, kept up to date by the meetings'
        # on_participants reports and by commit/forget (admission reads it on every Reserve).
        self._participants = 0
        self._admitting = _Admitting()
        self._draining = False
        self._tasks = tasks or TaskSupervisor(["touch-loop"])
        self._ticker: asyncio.Task[None] | None = None
        self._empty = asyncio.Event()  # set while no meeting is hosted
        self._empty.set()

    # -- read-only views (same loop; safe to read between awaits) --------------------------

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def meetings(self) -> dict[str, MeetingActor]:
        return dict(self._meetings)

    async def wait_empty(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds until no meeting is hosted; True if none is."""
        try:
            await asyncio.wait_for(self._empty.wait(), max(0.0, timeout))
        except TimeoutError:
            return False
        return True

    def meeting_loads(self) -> list[tuple[str, int]]:
        """(meeting id, participants) of every hosted meeting, for comprehensive heartbeats."""
        return [(m.meeting_id, m.participant_count) for m in self._meetings.values()]

    def capacity(self) -> Capacity:
        return Capacity(
            max_meetings=self._limits.max_meetings,
            current_meetings=len(self._meetings),
            max_participants=self._limits.max_participants,
            current_participants=self.participant_count(),
            draining=self._draining,
        )

    def participant_count(self) -> int:
        """Participants in the hosted meetings' rosters (connected or within their grace)."""
        return self._participants

    def _participants_changed(self, meeting: MeetingActor, delta: int) -> None:
        if self._meetings.get(meeting.meeting_id) is meeting:
            self._participants += delta

    def can_admit_participant(self) -> bool:
        """Whether one more participant fits under max_participants. Meetings call it
        synchronously right before taking the seat, so concurrent joins cannot overshoot."""
        return self.participant_count() < self._limits.max_participants

    # -- messages --------------------------------------------------------------------------

    async def reserve(self, meeting_id: str) -> ReserveResult:
        """`ask(Reserve(meeting_id))`, decided at once when the mailbox is empty (see the
        module docstring); raises ActorStopped as `ask` does."""
        if self.idle:
            return self._reserve(meeting_id)
        result: ReserveResult = await self.ask(Reserve(meeting_id))
        return result

    async def commit(self, message: Commit) -> MeetingActor:
        """`ask(message)`, applied at once when the mailbox is empty (see the module
        docstring). A commit without a reservation raises RuntimeError to the caller (through
        the mailbox it would crash the controller)."""
        if self.idle:
            return self._commit(message)
        meeting: MeetingActor = await self.ask(message)
        return meeting

    async def handle(self, message: ControllerMessage) -> ReserveResult | MeetingActor | None:
        if isinstance(message, Reserve):
            return self._reserve(message.meeting_id)
        if isinstance(message, Commit):
            return self._commit(message)
        if isinstance(message, Abort):
            self._release(message.meeting_id)
        elif isinstance(message, SetDraining):
            self._draining = True
        else:
            for meeting in list(self._meetings.values()):
                if not meeting.lost:
                    meeting.send(EndMeeting(message.reason))
        return None

    def _reserve(self, meeting_id: str) -> ReserveResult:
        hosted = self._meetings.get(meeting_id)
        if hosted is not None and hosted.lost:
            # Fenced out or ending: not ours any more, whatever its task is still doing.
            self._forget(hosted)
            hosted = None
        if hosted is not None:
            return Hosted(hosted)
        pending = self._admitting.futures.get(meeting_id)
        if pending is not None:
            return Pending(pending)
        capacity = self.capacity()
        rejection = decide_admission(
            AdmissionState(
                draining=self._draining,
                ready=self._is_ready(),
                hosted_meetings=capacity.current_meetings,
                admitting=len(self._admitting.futures),
                max_meetings=self._limits.max_meetings,
                current_participants=capacity.current_participants,
                max_participants=self._limits.max_participants,
                participant_estimate=self._limits.participant_estimate,
            )
        )
        if rejection is not None:
            return Rejected(rejection)
        self._admitting.futures[meeting_id] = asyncio.get_running_loop().create_future()
        MEETINGS_ADMITTING.set(len(self._admitting.futures))
        return Reserved()

    def _commit(self, message: Commit) -> MeetingActor:
        if message.meeting_id not in self._admitting.futures:
            raise RuntimeError(f"commit without a reservation for {message.meeting_id}")
        if message.lease.owner != self.mc_id:
            raise RuntimeError(f"commit of {message.meeting_id} under another owner's lease")
        previous = self._meetings.get(message.meeting_id)
        if previous is not None:  # a lost actor still running: not counted any more
            self._forget(previous)
        meeting = MeetingActor(
            message.lease,
            store=self._store,
            mhs=message.mhs,
            binder=self._binder,
            grace_seconds=self._grace_seconds,
            admit=self.can_admit_participant,
            on_participants=self._participants_changed,
            limits=self._meeting_limits,
            settings=message.settings,
            events=self._events,
            media=self._media,
        )
        self.spawn(meeting)
        self._meetings[message.meeting_id] = meeting
        self._participants += meeting.counted_participants
        self._empty.clear()
        MEETINGS_ACTIVE.set(len(self._meetings))
        self._release(message.meeting_id)
        return meeting

    def _release(self, meeting_id: str) -> None:
        future = self._admitting.futures.pop(meeting_id, None)
        if future is not None and not future.done():
            future.set_result(None)
        MEETINGS_ADMITTING.set(len(self._admitting.futures))

    # -- supervision -----------------------------------------------------------------------

    def child_exited(self, child: Actor[Any], exc: BaseException | None) -> None:
        if not isinstance(child, MeetingActor):
            return
        self._forget(child)
        reason = "crashed" if exc is not None else child.end_reason or "stopped"
        log.info("meeting %s left this MC (%s)", child.meeting_id, reason)
        if reason == MIGRATED:
            return  # handed off to another MC (live migration): it goes on there, no end
        if reason != "stopped":
            MEETINGS_ENDED.labels(reason).inc()
        # A fenced-out meeting is reported too: after a real takeover the GC ignores the notice
        # (its live assignment names the new MC), but when Redis lost the meeting's state the
        # GC must forget the assignment so that the next join places the meeting anew. Only a
        # process stop ("stopped") is silent: those meetings move when the GC sees us go stale.
        if self._on_meeting_ended is not None and reason != "stopped":
            self._on_meeting_ended(child.meeting_id, reason)

    def _forget(self, meeting: MeetingActor) -> None:
        if self._meetings.get(meeting.meeting_id) is meeting:
            del self._meetings[meeting.meeting_id]
            self._participants -= meeting.counted_participants
            MEETINGS_ACTIVE.set(len(self._meetings))
            if not self._meetings:
                self._empty.set()

    # -- periodic ownership check ----------------------------------------------------------

    async def on_start(self) -> None:
        PARTICIPANTS_ACTIVE.set_function(lambda: float(self.participant_count()))
        self._ticker = self._tasks.spawn("touch-loop", self._touch_loop())

    async def on_stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        for future in self._admitting.futures.values():
            if not future.done():
                future.set_result(None)
        self._admitting.futures.clear()
        MEETINGS_ADMITTING.set(0)
        MEETINGS_ACTIVE.set(0)

    async def _touch_loop(self) -> None:
        while True:
            await self._touch_round()

    async def _touch_round(self) -> None:
        """Send every hosted meeting a Touch, spread over one touch interval."""
        meetings = list(self._meetings.values())
        batches = [meetings[i : i + TOUCH_BATCH] for i in range(0, len(meetings), TOUCH_BATCH)]
        # One round per interval, whatever the number of meetings; meetings committed
        # during a round wait for the next one.
        gap = self._touch_interval / max(1, len(batches))
        if not batches:
            await asyncio.sleep(self._touch_interval)
        for batch in batches:
            await asyncio.sleep(gap)
            for meeting in batch:
                if meeting.lost:
                    continue
                try:
                    meeting.send(Touch())
                except ActorStopped:
                    continue
