"""Connections: a meeting's admitted client connections and the delivery of frames to them.

Each admitted participant has one current ConnectionActor; a reconnect replaces it. Frames go
through the connection's mailbox, so that each client gets the meeting's events in the order
the meeting produced them; a connection that already stopped is skipped (its participant's
disconnect is handled through `ConnectionLost`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from darktower.actors import Actor, ActorStopped
from darktower.mc.connection import Close, ConnectionActor, Deliver
from darktower.signaling.protocol import ErrorCode, ErrorMsg, LeaveReason, encode

__all__ = ["Connections", "send"]


def send(connection: ConnectionActor, message: Deliver | Close) -> None:
    """Queue `message` on `connection`, unless it stopped already."""
    with contextlib.suppress(ActorStopped):
        connection.send(message)


class Connections:
    __slots__ = ("_current",)

    def __init__(self) -> None:
        self._current: dict[str, ConnectionActor] = {}  # participant id → its connection

    def __len__(self) -> int:
        """Connected participants (each has one current connection)."""
        return len(self._current)

    def get(self, participant_id: str) -> ConnectionActor | None:
        return self._current.get(participant_id)

    def is_current(self, connection: ConnectionActor) -> bool:
        """True while `connection` is its participant's connection (not replaced, removed)."""
        return self._current.get(connection.participant_id) is connection

    def add(self, connection: ConnectionActor) -> None:
        self._current[connection.participant_id] = connection

    def pop(self, participant_id: str) -> ConnectionActor | None:
        return self._current.pop(participant_id, None)

    def deliver(self, connection: ConnectionActor, message: Any) -> None:
        """Encode a protocol message and send it to `connection`."""
        send(connection, Deliver(encode(message)))

    def error(self, connection: ConnectionActor, code: ErrorCode, text: str) -> None:
        self.deliver(connection, ErrorMsg(code=code, message=text))

    def broadcast(self, message: Any, *, exclude: str | None = None) -> None:
        """One encoding, delivered to every admitted connection but `exclude`'s."""
        frame = Deliver(encode(message))
        for participant_id, connection in list(self._current.items()):
            if participant_id != exclude:
                send(connection, frame)

    def close_all(self, children: Iterable[Actor[Any]], reason: LeaveReason) -> None:
        """Forget the admitted connections and close every running connection among the
        meeting's `children` (admitted or not) with `reason`."""
        self._current.clear()
        for child in children:
            if isinstance(child, ConnectionActor) and child.running:
                send(child, Close(reason))
