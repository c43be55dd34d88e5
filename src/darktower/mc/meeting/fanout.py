"""Connections: a meeting's admitted client connections and the delivery of frames to them.

Each admitted participant has one current ConnectionActor; a reconnect replaces it. Frames go
through the connection's mailbox, so that each client gets the meeting's events in the order
the meeting produced them; a connection that already stopped is skipped (its participant's
disconnect is handled through `ConnectionLost`).

Roster changes (`announce`: participant_joined / _left / _updated) reach the two kinds of
client differently. A v1 client gets each change as its own frame, at once. A client that
joined with the `roster_delta` feature (`ConnectionActor.roster_deltas`) gets them batched:
the first change opens a window of `batch_seconds`; when it closes (a loop timer, not a
mailbox message, so a queue of joins cannot hold it back; the window grows with the
meeting: one `batch_seconds` per 100 connections, at most 0.5 s) the changes of the window go out
as `roster_delta` frames — each participant once, in its latest state, or once in `left` —
at most `ROSTER_PAGE` entries a frame. Every frame is encoded once and the same bytes are
queued on every connection: a join storm of N costs about N / window frames per client, not
N. A window of 0 sends each change as a `roster_delta` of its own, at once. A window's frames
are queued on `FLUSH_SLICE` connections per turn of the event loop (a thousand connections
over ten turns, so that a pong waits behind a hundred sends, not a thousand); a window's frames
reach every connection before the next window's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection, Iterable
from typing import Any

from darktower.actors import Actor, ActorStopped
from darktower.mc.connection import Close, ConnectionActor, Deliver
from darktower.mc.meeting.roster_frames import RosterFrames
from darktower.signaling.protocol import (
    ROSTER_PAGE,
    ErrorCode,
    ErrorMsg,
    JoinAnswer,
    LeaveReason,
    Participant,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantUpdated,
    RosterDelta,
    RosterLeft,
    encode,
)

__all__ = ["Connections", "RosterChange", "roster_pages", "send"]

RosterChange = ParticipantJoined | ParticipantLeft | ParticipantUpdated
# The window grows by `batch_seconds` per this many connections, up to MAX_WINDOW_SECONDS.
WINDOW_CLIENTS = 100
MAX_WINDOW_SECONDS = 0.5
# A window's frames are queued on this many connections per turn of the event loop.
FLUSH_SLICE = 100


def send(connection: ConnectionActor, message: Deliver | Close) -> None:
    """Queue `message` on `connection`, unless it stopped already."""
    with contextlib.suppress(ActorStopped):
        connection.send(message)


def roster_pages(
    participants: list[Participant], left: list[RosterLeft], host_id: str | None
) -> list[Deliver]:
    """`roster_delta` frames carrying `participants` then `left`, ROSTER_PAGE entries each."""
    entries: list[Participant | RosterLeft] = [*participants, *left]
    frames = []
    for start in range(0, max(1, len(entries)), ROSTER_PAGE):
        page = entries[start : start + ROSTER_PAGE]
        delta = RosterDelta(
            participants=[e for e in page if isinstance(e, Participant)],
            left=[e for e in page if isinstance(e, RosterLeft)],
            host_id=host_id,
        )
        frames.append(Deliver(encode(delta)))
    return frames


class Connections:
    __slots__ = (
        "_batch_seconds",
        "_current",
        "_delivering",
        "_frames",
        "_host",
        "_pending",
        "_slice",
        "_timer",
        "_v1",
    )

    def __init__(
        self, *, batch_seconds: float = 0.0, host: Callable[[], str | None] = lambda: None
    ) -> None:
        """`batch_seconds`: the roster_delta window; `host()`: the meeting's host now."""
        self._current: dict[str, ConnectionActor] = {}  # participant id → its connection
        # The v1 ones among them (no `roster_delta`): an announcement visits only these.
        self._v1: dict[str, ConnectionActor] = {}
        self._batch_seconds = batch_seconds
        self._host = host
        # The window's changes: participant id → its latest state, or its departure.
        self._pending: dict[str, Participant | RosterLeft] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._frames = RosterFrames()  # the encoded roster of join answers (a cache)
        # A window's frames on their way: (targets, frames, the first target not yet given
        # them), and the loop callback giving the next slice.
        self._delivering: tuple[list[ConnectionActor], list[Deliver], int] | None = None
        self._slice: asyncio.Handle | None = None

    def __len__(self) -> int:
        """Connected participants (each has one current connection)."""
        return len(self._current)

    @property
    def batch_seconds(self) -> float:
        return self._batch_seconds

    @batch_seconds.setter
    def batch_seconds(self, seconds: float) -> None:
        self._batch_seconds = seconds

    def get(self, participant_id: str) -> ConnectionActor | None:
        return self._current.get(participant_id)

    def is_current(self, connection: ConnectionActor) -> bool:
        """True while `connection` is its participant's connection (not replaced, removed)."""
        return self._current.get(connection.participant_id) is connection

    def add(self, connection: ConnectionActor) -> None:
        participant_id = connection.participant_id
        self._current[participant_id] = connection
        if connection.roster_deltas:
            self._v1.pop(participant_id, None)
        else:
            self._v1[participant_id] = connection

    def pop(self, participant_id: str) -> ConnectionActor | None:
        self._v1.pop(participant_id, None)
        return self._current.pop(participant_id, None)

    def deliver(self, connection: ConnectionActor, message: Any) -> None:
        """Encode a protocol message and send it to `connection`."""
        send(connection, Deliver(encode(message)))

    def answer(self, connection: ConnectionActor, answer: JoinAnswer) -> None:
        """Queue a join answer; for a `roster_delta` client a roster of more than ROSTER_PAGE
        is paged: the first page in the answer, the rest in `roster_pages` `roster_delta`
        frames right after it. The roster's encoding is reused between answers (`RosterFrames`)."""
        for text in self._frames.answer(answer, paged=connection.roster_deltas):
            send(connection, Deliver(text))

    def error(self, connection: ConnectionActor, code: ErrorCode, text: str) -> None:
        self.deliver(connection, ErrorMsg(code=code, message=text))

    def broadcast(self, message: Any, *, exclude: str | None = None) -> None:
        """One encoding, delivered to every admitted connection but `exclude`'s."""
        frame = Deliver(encode(message))
        for participant_id, connection in list(self._current.items()):
            if participant_id != exclude:
                send(connection, frame)

    def announce(self, change: RosterChange, *, exclude: Collection[str] = ()) -> None:
        """A roster change: at once to v1 connections (but those of the participants in
        `exclude`), batched for the others (see the module docstring; the excluded ones' own
        state is harmless there)."""
        v1: Deliver | None = None
        for participant_id, connection in list(self._v1.items()):
            if participant_id not in exclude:
                if v1 is None:
                    v1 = Deliver(encode(change))
                send(connection, v1)
        if len(self._v1) == len(self._current):  # no roster_delta connection
            return
        if isinstance(change, ParticipantLeft):
            entry: Participant | RosterLeft = RosterLeft(
                participant_id=change.participant_id, reason=change.reason
            )
        else:
            entry = change.participant
        self._pending.pop(entry.participant_id, None)  # re-inserted last: the latest order
        self._pending[entry.participant_id] = entry
        if self._batch_seconds <= 0:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._window(), self.flush)

    def _window(self) -> float:
        """`batch_seconds` per `WINDOW_CLIENTS` connections, at most `MAX_WINDOW_SECONDS`
        (never less than `batch_seconds`): a storm of N joins takes time in proportion to N,
        so a fixed window would send each of N clients a number of frames in proportion to N
        too, N² sends in all; a window growing with N keeps the frames per client flat."""
        scale = max(1.0, len(self._current) / WINDOW_CLIENTS)
        return max(self._batch_seconds, min(MAX_WINDOW_SECONDS, self._batch_seconds * scale))

    def flush(self) -> None:
        """Send the window's changes to every batched connection (the same frames)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, {}
        targets = [c for c in self._current.values() if c.roster_deltas]
        if not pending or not targets:
            return
        participants = [e for e in pending.values() if isinstance(e, Participant)]
        left = [e for e in pending.values() if isinstance(e, RosterLeft)]
        frames = roster_pages(participants, left, self._host())
        self._finish_delivery()  # the previous window's frames reach everyone first
        self._delivering = (targets, frames, 0)
        self._deliver_slice()

    def _deliver_slice(self) -> None:
        """Queue the frames being delivered on the next FLUSH_SLICE connections, the rest at
        the event loop's next turns: a pong never waits for a thousand sends."""
        self._slice = None
        self._give(FLUSH_SLICE)
        if self._delivering is not None:
            self._slice = asyncio.get_running_loop().call_soon(self._deliver_slice)

    def _finish_delivery(self) -> None:
        """Queue the frames being delivered on every connection still waiting for them."""
        if self._slice is not None:
            self._slice.cancel()
            self._slice = None
        self._give(None)

    def _give(self, count: int | None) -> None:
        """The frames being delivered to the next `count` targets (None: all the rest)."""
        if self._delivering is None:
            return
        targets, frames, start = self._delivering
        end = len(targets) if count is None else start + count
        for connection in targets[start:end]:
            for frame in frames:
                send(connection, frame)
        self._delivering = (targets, frames, end) if end < len(targets) else None

    def cancel(self) -> None:
        """Drop the window's changes and what is left of a delivery (the meeting stops)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._slice is not None:
            self._slice.cancel()
            self._slice = None
        self._delivering = None
        self._pending.clear()

    def close_all(self, children: Iterable[Actor[Any]], reason: LeaveReason) -> None:
        """Forget the admitted connections and close every running connection among the
        meeting's `children` (admitted or not) with `reason`."""
        self.cancel()
        self._current.clear()
        self._v1.clear()
        for child in children:
            if isinstance(child, ConnectionActor) and child.running:
                send(child, Close(reason))
