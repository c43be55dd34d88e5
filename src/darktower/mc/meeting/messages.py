"""What a `MeetingActor` is sent: its mailbox's message union, `MeetingMessage`.

From the controller: `UpdateMhs`, `Touch`, `EndMeeting`. From the GC's meeting API (through
the MC's gRPC edge): `EndMeeting`, `RemoveIdentity` and `MuteIdentity` (each answered with
the number of participant sessions it reached). From the signaling server:
`JoinRequest` (answered None or a `JoinRefusal`), `ClientFrame`, `ConnectionLost` (also sent
by the meeting itself when a connection crashed). From the meeting's own timers:
`GraceExpired`, `EmptyExpired` (nobody connected for the empty timeout) and `FlushUpdates`
(the coalescing window of self_mute flips closed).
"""

from __future__ import annotations

from dataclasses import dataclass

from darktower.auth.join_tokens import JoinClaims
from darktower.mc.connection import ConnectionActor
from darktower.mc.validation import MhTarget
from darktower.signaling.protocol import HostMute, Leave, Ping, SelfMute

__all__ = [
    "ClientFrame",
    "ConnectionLost",
    "EmptyExpired",
    "EndMeeting",
    "FlushUpdates",
    "Freeze",
    "GraceExpired",
    "HandOff",
    "JoinRequest",
    "MeetingMessage",
    "MuteIdentity",
    "RemoveIdentity",
    "Thaw",
    "Touch",
    "UpdateMhs",
]


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
class RemoveIdentity:
    """Remove every participant of `identity` (user id): `participant_left{removed}`, and the
    identity may not join this meeting again (recorded in its Redis state)."""

    identity: str


@dataclass(frozen=True, slots=True)
class MuteIdentity:
    """Host-mute (or unmute) every participant of `identity`, as a host's `host_mute`."""

    identity: str
    muted: bool


@dataclass(frozen=True, slots=True)
class Freeze:
    """Live migration (`handoff.py`): stop changing the meeting's state, so that the MC taking
    it over reads the final state. Answered with the connected participants (`Traveller`s)."""


@dataclass(frozen=True, slots=True)
class Thaw:
    """The migration did not happen (no MC could take the meeting): go on as before."""


@dataclass(frozen=True, slots=True)
class HandOff:
    """The meeting now lives on another MC: redirect each connected client there with its
    fresh join token (`tokens`: participant id → join token), then stop without ending."""

    signaling_url: str
    tokens: tuple[tuple[str, str], ...]
    mc_id: str = ""  # the new MC's, told to the clients for display


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """Admit `connection` for the verified join token `claims`; a reconnect when
    `correlation_id` and `binding_token` are given. Answers None or a JoinRefusal."""

    claims: JoinClaims
    connection: ConnectionActor
    correlation_id: str | None = None
    binding_token: str | None = None


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
    """The grace timer `epoch` of a disconnected participant ran out (ignored when that
    timer was cancelled or replaced since)."""

    participant_id: str
    epoch: int


@dataclass(frozen=True, slots=True)
class EmptyExpired:
    """The empty timer `epoch` ran out (ignored when someone connected since)."""

    epoch: int


@dataclass(frozen=True, slots=True)
class FlushUpdates:
    """Write and broadcast the participant state changes held back for coalescing."""


MeetingMessage = (
    UpdateMhs
    | Touch
    | EndMeeting
    | JoinRequest
    | ClientFrame
    | ConnectionLost
    | GraceExpired
    | EmptyExpired
    | FlushUpdates
    | RemoveIdentity
    | MuteIdentity
    | Freeze
    | Thaw
    | HandOff
)
