"""Live migration of one meeting, the meeting's side: freeze, then hand off or thaw.

A draining MC moves each meeting to another MC (`darktower.mc.migration` runs it):

1. `Freeze` — from now on the meeting changes nothing in Redis (the ADR's invariant: the MC
   taking it over reads the final state). While frozen: a `join` is refused
   `meeting_unavailable` (the client asks the GC again and lands on the new MC); a ping is
   still answered (a pong mints a binding token and writes nothing); a `leave` or a dropped
   socket closes the connection without a write (the new owner starts every participant
   disconnected with a fresh grace anyway); mutes, touches, timers and meeting commands are
   dropped (a command is answered `StoreUnavailable`: try again). `EndMeeting` still ends it
   (the drain's deadline). The answer is the connected participants, `Traveller`s.
2. `HandOff(signaling_url, tokens)` — the GC placed the meeting on another MC, which took it
   over at a higher generation. Each connected client gets a `redirect` (the new URL, its own
   fresh join token, its session's correlation id and a fresh binding token) and its socket is
   closed without a `participant_left`; the actor stops with end reason `migrated` (no fenced
   delete, no meeting-ended notice: the meeting goes on elsewhere).
   Or `Thaw` — nobody could take it: the meeting goes on here until the next try.

`FrozenMeeting` decides what a frozen meeting does with each message (`while_frozen`, pure).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from darktower.mc.connection import Close
from darktower.mc.meeting.fanout import send
from darktower.mc.meeting.messages import (
    ClientFrame,
    ConnectionLost,
    EndMeeting,
    Freeze,
    HandOff,
    JoinRequest,
    MeetingMessage,
    Thaw,
)
from darktower.mc.meeting.participants import Participants
from darktower.mc.meeting.sessions import SessionTokens
from darktower.signaling.protocol import Leave, LeaveReason, Ping, Redirect

__all__ = ["MIGRATED", "FrozenAction", "Traveller", "hand_off", "travellers", "while_frozen"]

# The end reason of a meeting handed off to another MC (not an end: never reported as one).
MIGRATED = "migrated"


@dataclass(frozen=True, slots=True)
class Traveller:
    """A connected participant of a meeting being migrated: what the GC needs to mint its join
    token (the new MC checks the user against the session the binding token names)."""

    participant_id: str
    user_id: str
    display_name: str
    role: str


class FrozenAction(Enum):
    APPLY = "apply"  # as usual (it writes nothing: a ping)
    REFUSE_JOIN = "refuse_join"  # meeting_unavailable
    CLOSE = "close"  # the connection goes, nothing is written
    END = "end"  # the drain's deadline ends the meeting after all
    THAW = "thaw"
    HAND_OFF = "hand_off"
    FREEZE = "freeze"  # again: answer the travellers again
    DROP = "drop"  # everything else: nothing happens


def while_frozen(message: MeetingMessage) -> FrozenAction:
    """What a frozen meeting does with `message` (see the module docstring)."""
    match message:
        case JoinRequest():
            return FrozenAction.REFUSE_JOIN
        case ClientFrame(message=Ping()):
            return FrozenAction.APPLY
        case ClientFrame(message=Leave()) | ConnectionLost():
            return FrozenAction.CLOSE
        case EndMeeting():
            return FrozenAction.END
        case Thaw():
            return FrozenAction.THAW
        case HandOff():
            return FrozenAction.HAND_OFF
        case Freeze():
            return FrozenAction.FREEZE
        case _:
            return FrozenAction.DROP


def travellers(participants: Participants) -> list[Traveller]:
    """The connected participants, in roster order."""
    return [
        Traveller(m.participant_id, m.user_id, m.display_name, m.role)
        for m in participants.roster.members.values()
        if participants.connections.get(m.participant_id) is not None
    ]


def close_quietly(participants: Participants, message: ClientFrame | ConnectionLost) -> None:
    """A frozen meeting's `leave` or dropped socket: the connection goes, nothing is written."""
    connection = message.connection
    if participants.connections.is_current(connection):
        participants.connections.pop(connection.participant_id)
        member = participants.roster.get(connection.participant_id)
        if member is not None:
            member.connected = False
    reason = LeaveReason.VOLUNTARY if isinstance(message, ClientFrame) else None
    send(connection, Close(reason))


def hand_off(participants: Participants, tokens: SessionTokens | None, message: HandOff) -> int:
    """Redirect every connected client that has a join token in `message` to the new MC and
    close its socket; a connection without one is told `moved` (it asks the GC again).
    Answers how many clients were redirected."""
    join_tokens = dict(message.tokens)
    redirected = 0
    for participant_id in list(participants.roster.members):
        connection = participants.connections.pop(participant_id)
        if connection is None:
            continue
        member = participants.roster.members[participant_id]
        token = join_tokens.get(participant_id)
        if token is None or tokens is None:
            send(connection, Close(LeaveReason.MOVED))
            continue
        binding = tokens.pong(member, None).binding_token
        assert binding is not None
        redirect = Redirect(
            signaling_url=message.signaling_url,
            token=token,
            correlation_id=member.correlation_id,
            binding_token=binding,
            reason="migration",
            mc_id=message.mc_id or None,
        )
        participants.connections.deliver(connection, redirect)
        send(connection, Close(None))
        redirected += 1
    return redirected
