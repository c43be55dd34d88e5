"""ConnectionActor: one per client connection, child of its MeetingActor.

It is the only writer to its client: every frame for the client (the join answer first, then
the meeting's events, error replies) goes through its mailbox, so frames reach the client in
the order the meeting produced them. `outbox` sends one encoded text frame (the transport's
send; it must swallow a closed transport rather than raise); `hangup` closes the transport.

The mailbox is bounded by `max_queue`: a client that does not read its socket blocks the
outbox, and a message that finds `max_queue` frames waiting is not queued — the connection is
cut instead (`cut`, the transport's abort: a client that reads nothing would never read a
close frame either), counted as `slow_consumer`. The meeting hears of it as of any dropped
socket (`ConnectionLost`), so the others in the meeting never wait for a slow reader.

`Close(reason)` tells the client it is out of the meeting — a `participant_left` with the
client's own participant id and `reason` (moved, meeting_ended, voluntary, ...) — then hangs up
and stops; `Close(None)` hangs up without a word (a reconnect replaced this connection). When
its meeting stops, the actor is stopped with it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from darktower.actors import Actor
from darktower.mc.metrics import SIGNALING_CUTOFFS
from darktower.signaling.protocol import LeaveReason, ParticipantLeft, encode

__all__ = ["DEFAULT_SEND_QUEUE", "Close", "ConnectionActor", "Deliver", "Hangup", "Outbox"]

# Frames waiting for a client before it is cut off (MC_CLIENT_SEND_QUEUE).
DEFAULT_SEND_QUEUE = 256

Outbox = Callable[[str], Awaitable[None]]
Hangup = Callable[[], Awaitable[None]]


async def _no_hangup() -> None:
    return None


def _no_cut() -> None:
    return None


@dataclass(frozen=True, slots=True)
class Deliver:
    """Send one encoded frame to the client."""

    frame: str


@dataclass(frozen=True, slots=True)
class Close:
    """Tell the client it left the meeting and why (None: say nothing), hang up, stop."""

    reason: LeaveReason | None


ConnectionMessage = Deliver | Close


class ConnectionActor(Actor[ConnectionMessage]):
    actor_type = "connection"
    mailbox_warning = 50
    mailbox_critical = 200

    def __init__(
        self,
        connection_id: str,
        participant_id: str,
        outbox: Outbox,
        *,
        hangup: Hangup = _no_hangup,
        cut: Callable[[], None] = _no_cut,
        max_queue: int = DEFAULT_SEND_QUEUE,
    ) -> None:
        """`cut` drops the transport at once (called at most once, on overflow)."""
        super().__init__(connection_id)
        # Set by the meeting when it admits the connection (unknown before the join).
        self.participant_id = participant_id
        self._outbox = outbox
        self._hangup = hangup
        self._cut = cut
        self._max_queue = max_queue
        self.overflowed = False
        # The client joined with the `roster_delta` feature: it gets batched roster frames.
        self.roster_deltas = False
        self.close_reason: LeaveReason | None = None

    def send(self, message: ConnectionMessage) -> None:
        """Queue `message`, or cut the client off when `max_queue` frames wait already;
        ActorStopped once the connection stops (cut included)."""
        if self.mailbox_depth >= self._max_queue and isinstance(message, Deliver):
            self.overflowed = True
            SIGNALING_CUTOFFS.labels("slow_consumer").inc()
            self._cut()
            self.request_stop()
            return
        super().send(message)

    async def handle(self, message: ConnectionMessage) -> None:
        if isinstance(message, Deliver):
            await self._outbox(message.frame)
            return
        self.close_reason = message.reason
        if message.reason is not None:
            left = ParticipantLeft(participant_id=self.participant_id, reason=message.reason)
            await self._outbox(encode(left))
        self.request_stop()
        await self._hangup()
