"""ConnectionActor: one per client connection, child of its MeetingActor.

Client signaling arrives in a later issue; the actor already has its place in the tree and its
lifecycle: it forwards events to the client through `outbox` (the transport's send), and on
`Close` it tells the client why and stops. When its meeting is stopped, it is stopped with it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from darktower.actors import Actor

__all__ = ["Close", "ConnectionActor", "Deliver", "Outbox"]

Outbox = Callable[[Mapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Deliver:
    """Forward one event to the client."""

    event: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Close:
    """Tell the client the connection ends and why (e.g. "moved", "meeting_ended"), then stop."""

    reason: str


ConnectionMessage = Deliver | Close


class ConnectionActor(Actor[ConnectionMessage]):
    actor_type = "connection"
    mailbox_warning = 50
    mailbox_critical = 200

    def __init__(self, connection_id: str, participant_id: str, outbox: Outbox) -> None:
        super().__init__(connection_id)
        self.participant_id = participant_id
        self._outbox = outbox
        self.close_reason: str | None = None

    async def handle(self, message: ConnectionMessage) -> None:
        if isinstance(message, Deliver):
            await self._outbox(message.event)
        else:
            self.close_reason = message.reason
            await self._outbox({"type": "closed", "reason": message.reason})
            self.request_stop()
