"""The client signaling protocol, version 1: JSON text frames over a WebSocket.

Every frame is one JSON object with `"v": 1` and a `"type"`. A client that sends another
version gets an `error` with code `unsupported_version` and the connection is closed; a later
version adds types or optional fields, never changes the meaning of an existing one.

Client → MC:

    join        {token, correlation_id?, binding_token?, meeting_id?, features?}
                                                first frame; correlation_id and binding_token
                                                on reconnect (both or neither); meeting_id, when
                                                given, must be the join token's meeting (else
                                                wrong_meeting); features: what the client
                                                understands beyond the base frames (known:
                                                "roster_delta"; unknown names are ignored)
    self_mute   {muted}                                     informational, relayed to the others
    host_mute   {participant_id, muted}                     enforced; only the meeting's host
    leave       {}                                          voluntary leave; the MC closes after
    ping        {nonce?}                                    keepalive; every ~10 s

MC → client:

    join_answer         {participant_id, correlation_id, binding_token, roster, host_id,
                         reconnected, metadata?, media?}   metadata: the meeting's, as
                                               created; media: [{mh_id, role, url, room,
                                               token}], one per media handler
    participant_joined  {participant, host_id?}   host_id: set when the joiner became host
    participant_left    {participant_id, reason, host_id?}
                                               reason: voluntary | timeout | removed |
                                               meeting_ended | moved; host_id: the meeting's
                                               host after this departure (set when others stay)
    participant_updated {participant}              mute or connection state changed
    roster_delta        {participants, left, host_id}   only to clients that joined with
                                               features ["roster_delta"], instead of the three
                                               frames above: the roster changes of a short
                                               window (MC_ROSTER_BATCH_SECONDS), one frame for
                                               everyone; participants: their latest state
                                               (joined or updated), left: [{participant_id,
                                               reason}]; host_id: the host after them. Also the
                                               rest of a paged join_answer roster.
    muted               {participant_id, muted, by}   a host mute (the target must honour it);
                                               by: the host's participant id, or "api" (the
                                               application's meeting API)
    pong                {nonce?, binding_token?}   a fresh binding token with each pong
    redirect            {signaling_url, token, correlation_id, binding_token, reason}
                                               the meeting moved to another MC (reason:
                                               "migration", its MC drains): open signaling_url
                                               and send join {token, correlation_id,
                                               binding_token}; the MC closes this socket after
    media_update        {media, reason}            the participant's media grants changed (a media
                                               handler of the meeting went down: reason
                                               "mh_down"; or the meeting got other ones:
                                               "reassigned"): `media` replaces the join
                                               answer's, primary first; the client moves its
                                               media to the first one now
    error               {code, message}            codes in ErrorCode; fatal ones close the socket

`roster` is a list of participants (for a client with "roster_delta", at most
`ROSTER_PAGE` of them: `roster_pages` says how many `roster_delta` frames with the rest
follow at once): {participant_id, user_id, display_name, muted,
host_muted, connected}. `correlation_id` is a UUIDv7 naming one participant session across
reconnects; `binding_token` proves the reconnecting client is the one that held the session
(see `darktower.mc.binding`).
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

__all__ = [
    "MAX_FRAME_BYTES",
    "MAX_SERVER_FRAME_BYTES",
    "PROTOCOL_VERSION",
    "ROSTER_DELTA",
    "ROSTER_PAGE",
    "ClientMessage",
    "ErrorCode",
    "ErrorMsg",
    "HostMute",
    "Join",
    "JoinAnswer",
    "Leave",
    "LeaveReason",
    "MediaGrant",
    "MediaUpdate",
    "Muted",
    "Participant",
    "ParticipantJoined",
    "ParticipantLeft",
    "ParticipantUpdated",
    "Ping",
    "Pong",
    "ProtocolError",
    "Redirect",
    "RosterDelta",
    "RosterLeft",
    "SelfMute",
    "ServerMessage",
    "encode",
    "parse_client",
    "parse_server",
]

PROTOCOL_VERSION = 1
# Larger frames are refused by the WebSocket server itself (a join token is at most 8 KiB).
MAX_FRAME_BYTES = 16 * 1024
# Frames from the MC may be larger: a join answer carries the whole roster (~120 bytes per
# participant). Clients should accept frames up to this size (websockets' default max_size).
MAX_SERVER_FRAME_BYTES = 1024 * 1024

_ID = Annotated[str, Field(min_length=1, max_length=255)]
# The feature a client names in its join to get `roster_delta` frames (see the docstring).
ROSTER_DELTA = "roster_delta"
# Participants in one roster frame for such a client (join_answer or roster_delta): a
# participant is at most ~700 bytes of JSON (ids 255, name 100 characters), so a page stays
# far below MAX_SERVER_FRAME_BYTES.
ROSTER_PAGE = 250
MAX_FEATURES = 16


class ErrorCode(StrEnum):
    BAD_MESSAGE = "bad_message"  # not JSON, unknown type, missing/invalid field
    UNSUPPORTED_VERSION = "unsupported_version"
    NOT_JOINED = "not_joined"  # a message before a successful join
    INVALID_JOIN_TOKEN = "invalid_join_token"  # noqa: S105 - bad signature, expired, malformed
    WRONG_MEETING = "wrong_meeting"  # join token for another meeting
    INVALID_BINDING = "invalid_binding"  # forged, expired, replayed, other user's
    SESSION_EXPIRED = "session_expired"  # reconnect after the grace period
    NOT_HOST = "not_host"  # host_mute from a participant who is not the host
    UNKNOWN_PARTICIPANT = "unknown_participant"
    MEETING_UNAVAILABLE = "meeting_unavailable"  # not hosted here, full, or Redis down
    MEETING_FULL = "meeting_full"  # the meeting is at MC_MAX_PARTICIPANTS_PER_MEETING
    TOKEN_REUSED = "token_reused"  # noqa: S105 - a join token is good for one join
    RATE_LIMITED = "rate_limited"  # frames faster than MC_CLIENT_MESSAGE_RATE; dropped
    REMOVED = "removed"  # the identity was removed from this meeting (meeting API)


class LeaveReason(StrEnum):
    VOLUNTARY = "voluntary"
    TIMEOUT = "timeout"
    REMOVED = "removed"
    MEETING_ENDED = "meeting_ended"
    MOVED = "moved"


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    v: Literal[1] = 1


# -- client → MC ---------------------------------------------------------------------------


class Join(_Frame):
    type: Literal["join"] = "join"
    token: Annotated[str, Field(min_length=1, max_length=8192)]
    correlation_id: Annotated[str, Field(max_length=64)] | None = None
    binding_token: Annotated[str, Field(max_length=512)] | None = None
    # Added in v1 (optional): the meeting the client means to join.
    meeting_id: _ID | None = None
    # Added in v1 (optional): features the client understands (ROSTER_DELTA); others ignored.
    features: Annotated[
        list[Annotated[str, Field(max_length=64)]], Field(max_length=MAX_FEATURES)
    ] = []


class SelfMute(_Frame):
    type: Literal["self_mute"] = "self_mute"
    muted: bool


class HostMute(_Frame):
    type: Literal["host_mute"] = "host_mute"
    participant_id: _ID
    muted: bool


class Leave(_Frame):
    type: Literal["leave"] = "leave"


class Ping(_Frame):
    type: Literal["ping"] = "ping"
    nonce: Annotated[str, Field(max_length=64)] | None = None


ClientMessage = Annotated[Join | SelfMute | HostMute | Leave | Ping, Field(discriminator="type")]

# -- MC → client ---------------------------------------------------------------------------


class Participant(BaseModel):
    model_config = ConfigDict(frozen=True)
    participant_id: str
    user_id: str
    display_name: str
    muted: bool = False
    host_muted: bool = False
    connected: bool = True


class MediaGrant(BaseModel):
    """Where and how the client sends and receives media on one media handler: `url` is the
    handler's http(s) URL (the client opens ws(s) there, Janus's WebSocket API), `room` and
    `token` admit this participant into this meeting's room only."""

    model_config = ConfigDict(frozen=True)
    mh_id: str
    role: str  # "primary" or "backup"
    url: str
    room: str
    token: str = Field(repr=False)  # admits into the room: never in a log


class JoinAnswer(_Frame):
    type: Literal["join_answer"] = "join_answer"
    participant_id: str
    correlation_id: str
    binding_token: str
    roster: list[Participant]
    host_id: str | None
    reconnected: bool = False
    # Added in v1 (optional): the meeting's metadata as the application set it when creating
    # the meeting (`POST /v1/meetings`, at most 4 KiB, opaque); null when it set none.
    metadata: str | None = None
    # Added with media (optional): one grant per media handler that registered the
    # participant, the primary first; empty when no media handler serves the meeting.
    media: list[MediaGrant] = []
    # Added with roster_delta (optional): how many `roster_delta` frames follow at once with
    # the rest of the roster (`roster` is then its first page); only for clients that asked.
    roster_pages: int = 0


class MediaUpdate(_Frame):
    """Added with media failover: new media grants for this participant (see the docstring)."""

    type: Literal["media_update"] = "media_update"
    media: list[MediaGrant] = []
    reason: str = "mh_down"


class ParticipantJoined(_Frame):
    type: Literal["participant_joined"] = "participant_joined"
    participant: Participant
    # Added in v1 (optional): set when the joiner became host (a host-role access token taking
    # the host over from a first joiner without the role).
    host_id: str | None = None


class ParticipantLeft(_Frame):
    type: Literal["participant_left"] = "participant_left"
    participant_id: str
    reason: LeaveReason
    # Added in v1 (optional): the host after this departure (it changes when the host left).
    host_id: str | None = None


class ParticipantUpdated(_Frame):
    type: Literal["participant_updated"] = "participant_updated"
    participant: Participant


class RosterLeft(BaseModel):
    model_config = ConfigDict(frozen=True)
    participant_id: str
    reason: LeaveReason


class RosterDelta(_Frame):
    """Added with the `roster_delta` feature: a window's roster changes in one frame."""

    type: Literal["roster_delta"] = "roster_delta"
    participants: list[Participant] = []
    left: list[RosterLeft] = []
    host_id: str | None = None


class Muted(_Frame):
    type: Literal["muted"] = "muted"
    participant_id: str
    muted: bool
    by: str


class Pong(_Frame):
    type: Literal["pong"] = "pong"
    nonce: str | None = None
    # A fresh binding token: a binding token lives 30 s, so a client that pings (every 10 s)
    # always holds one it can resume with after its connection drops.
    binding_token: str | None = None


class Redirect(_Frame):
    """Added in v1: the meeting moved to another MC while this client was connected (its MC
    drains). The client resumes its session there: `join {token, correlation_id,
    binding_token}` on `signaling_url` answers `join_answer {reconnected: true}` with the same
    participant id. `token` is a fresh join token for this client's user (good for one join)."""

    type: Literal["redirect"] = "redirect"
    signaling_url: str
    token: str = Field(repr=False)  # admits one join: never in a log
    correlation_id: str
    binding_token: str = Field(repr=False)
    reason: str = "migration"
    mc_id: str | None = None  # the new MC's id, for display


class ErrorMsg(_Frame):
    type: Literal["error"] = "error"
    code: ErrorCode
    message: str


ServerMessage = Annotated[
    JoinAnswer
    | ParticipantJoined
    | ParticipantLeft
    | ParticipantUpdated
    | RosterDelta
    | Muted
    | MediaUpdate
    | Pong
    | Redirect
    | ErrorMsg,
    Field(discriminator="type"),
]

_client: TypeAdapter[Join | SelfMute | HostMute | Leave | Ping] = TypeAdapter(ClientMessage)
_server: TypeAdapter[
    JoinAnswer
    | ParticipantJoined
    | ParticipantLeft
    | ParticipantUpdated
    | RosterDelta
    | Muted
    | MediaUpdate
    | Pong
    | Redirect
    | ErrorMsg
] = TypeAdapter(ServerMessage)


class ProtocolError(ValueError):
    """A frame that is not a valid message; `code` says which kind, `message` is safe to send."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _load(frame: str | bytes, limit: int = MAX_FRAME_BYTES) -> dict[str, Any]:
    if len(frame) > limit:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "frame too large")
    try:
        data = json.loads(frame)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "frame is not JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "frame is not a JSON object")
    if data.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION, f"protocol version {PROTOCOL_VERSION} only"
        )
    return data


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    # The first location is the message type (the discriminator); the field follows it.
    where = ".".join(str(p) for p in err["loc"][1:]) or "type"
    return f"{where}: {err['msg']}"  # never echoes the input (a token, say)


def parse_client(frame: str | bytes) -> Join | SelfMute | HostMute | Leave | Ping:
    """A client frame → its message; ProtocolError on anything else."""
    data = _load(frame)
    try:
        return _client.validate_python(data)
    except ValidationError as exc:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, _first_error(exc)) from None


def parse_server(
    frame: str | bytes,
) -> (
    JoinAnswer
    | ParticipantJoined
    | ParticipantLeft
    | ParticipantUpdated
    | RosterDelta
    | Muted
    | MediaUpdate
    | Pong
    | Redirect
    | ErrorMsg
):
    """An MC frame → its message (for clients); ProtocolError on anything else."""
    data = _load(frame, MAX_SERVER_FRAME_BYTES)
    try:
        return _server.validate_python(data)
    except ValidationError as exc:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, _first_error(exc)) from None


def encode(message: BaseModel) -> str:
    """One compact JSON text frame."""
    return message.model_dump_json(exclude_none=False)
