"""ConnectionActor: one per client connection, child of its MeetingActor.

It is the only writer to its client: every frame for the client (the join answer first, then
the meeting's events, error replies) goes through its mailbox, so frames reach the client in
the order the meeting produced them. `outbox` sends one encoded text frame (the transport's
send; it must swallow a closed transport rather than raise); `hangup` closes the transport.

`Close(reason)` tells the client it is out of the meeting — a `participant_left` with the
client's own participant id and `reason` (moved, meeting_ended, voluntary, ...) — then hangs up
and stops; `Close(None)` hangs up without a word (a reconnect replaced this connection). When
its meeting stops, the actor is stopped with it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from darktower.actors import Actor
from darktower.signaling.protocol import LeaveReason, ParticipantLeft, encode

__all__ = ["Close", "ConnectionActor", "Deliver", "Hangup", "Outbox"]

Outbox = Callable[[str], Awaitable[None]]
Hangup = Callable[[], Awaitable[None]]


async def _no_hangup() -> None:
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
    ) -> None:
        super().__init__(connection_id)
        # Set by the meeting when it admits the connection (unknown before the join).
        self.participant_id = participant_id
        self._outbox = outbox
        self._hangup = hangup
        self.close_reason: LeaveReason | None = None

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
