"""The meeting API on the GC's HTTP app (README "Application API"): applications create
meetings with settings, read them and their live roster, end them, remove and mute people.

    POST   /v1/meetings                                       admin   create (or find) a meeting
    GET    /v1/meetings/{id}                                  host    its state, MC, settings
    GET    /v1/meetings/{id}/participants                     host    the live roster
    DELETE /v1/meetings/{id}                                  admin   end it
    DELETE /v1/meetings/{id}/participants/{identity}          admin   remove an identity
    POST   /v1/meetings/{id}/participants/{identity}/mute     host    host-mute an identity

(`GET /v1/meetings`, the paged listing, stays with the operator reads in `http.py`.) Who may
call what: `darktower.gc.meeting_access` ("host" = an admin token, or a host token for that
meeting). Creating places the meeting at once, as a join would, with its settings handed to
the MC that takes it (`AssignMeetingWithMh.settings`); the MC stores them with the meeting in
Redis, so an MC that takes the meeting over enforces them too. A meeting already placed is
answered as it is (`created: false`, its own settings).

Reads of the live roster and every command go to the meeting's MC through the MC's meeting API
RPCs, with a GC token for that MC only. No silent success: a meeting with no live assignment is
404 `meeting_not_found`; one being placed right now, or that its MC no longer hosts (it ended
or moved: a join places it again), 409; an MC that does not answer 503 `mc_unreachable` /
`mc_timeout`, one that predates these RPCs 503 `mc_unsupported`, an MC whose Redis is down 503
`mc_state_unavailable`. After an end the GC ends the live assignment itself (the MC's
NotifyMeetingEnded may come later), so the next join places a new meeting.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import Body, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from darktower.auth.access_tokens import AccessGrant
from darktower.common.clock import utcnow
from darktower.common.errors import invalid_field_as
from darktower.common.ids import validate_id
from darktower.common.meeting_settings import (
    MAX_EMPTY_TIMEOUT_SECONDS,
    MAX_METADATA_BYTES,
    MAX_PARTICIPANTS_SETTING,
    validate_settings,
)
from darktower.common.names import validate_user_id
from darktower.gc.access import GcAccess
from darktower.gc.domain import AssignmentState, LivePlacement
from darktower.gc.errors import InvalidGcRequest
from darktower.gc.join import PlacementService
from darktower.gc.join.joiner import validate_joiner
from darktower.gc.mc_client import CommandOutcome, McCallFailed, McClient
from darktower.gc.meeting_access import decide_meeting_access
from darktower.gc.store import GcStore
from darktower.wire.dark_tower import internal_pb2 as pb

__all__ = ["MeetingApiError", "mount_meetings_api"]

_T = TypeVar("_T")
# A read of the meeting waits this long for its MC's live view, then answers without it.
LIVE_VIEW_TIMEOUT_S = 2.0


class MeetingApiError(Exception):
    """A refusal of the meeting API: HTTP `status`, `error` kind, `reason`, message."""

    def __init__(self, status: int, error: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.reason = reason


class MeetingCreateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    meeting_id: StrictStr | None = Field(
        default=None,
        description="1-255 bytes of letters, digits, '-' and '_'; absent: a new random id",
    )
    max_participants: StrictInt | None = Field(
        default=None,
        description=f"1-{MAX_PARTICIPANTS_SETTING}; never above the MC's own per-meeting cap; "
        "a join beyond it is refused `meeting_full`",
    )
    empty_timeout_seconds: StrictInt | None = Field(
        default=None,
        description=f"1-{MAX_EMPTY_TIMEOUT_SECONDS}: the meeting ends this long after nobody "
        "is connected (also when nobody ever joined); absent: the MC's default",
    )
    metadata: StrictStr | None = Field(
        default=None,
        description=f"at most {MAX_METADATA_BYTES} bytes of UTF-8, opaque; every client gets "
        "it in its `join_answer`",
    )


class MuteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    muted: bool = Field(default=True, description="true: host-mute; false: lift it")


class MeetingSettingsOut(BaseModel):
    max_participants: int | None
    empty_timeout_seconds: int | None
    metadata: str | None


class MeetingDetailOut(BaseModel):
    meeting_id: str
    region: str
    state: str = Field(description='"claimed" while being placed, then "active"')
    mc_id: str | None
    mh_ids: list[str]
    created_at: datetime = Field(description="when this placement of the meeting began")
    assigned_at: datetime | None
    participants: int = Field(description="as last reported by the hosting MC (heartbeats)")
    live_participants: int | None = Field(
        default=None, description="the roster size on the MC now; null when it did not answer"
    )
    connected: int | None = Field(default=None, description="of which connected now")
    settings: MeetingSettingsOut | None = Field(
        default=None, description="the settings the MC enforces; null when it did not answer"
    )
    mc_answer: str = Field(
        default="ok",
        description='"ok", or why the MC gave no live view ("not_asked" while being placed, '
        '"not_hosted", "mc_unreachable", ...)',
    )


class MeetingCreatedOut(BaseModel):
    meeting_id: str
    created: bool = Field(description="false: the meeting was already placed (its own settings)")
    region: str
    mc_id: str
    settings: MeetingSettingsOut | None = Field(
        description="the settings the MC enforces; null when it did not answer the read"
    )


class ParticipantOut(BaseModel):
    identity: str = Field(description="the user id (an access token's `sub`)")
    participant_id: str
    name: str
    role: str
    host: bool
    muted: bool = Field(description="self-muted")
    host_muted: bool
    connected: bool = Field(description="false: disconnected, within the reconnect grace")
    joined_at: datetime


class ParticipantsOut(BaseModel):
    meeting_id: str
    mc_id: str
    host_id: str | None
    participants: list[ParticipantOut] = Field(description="in the order they joined")


class MeetingEndedOut(BaseModel):
    meeting_id: str
    ended: bool
    participants: int = Field(description="participants it had")


class ParticipantCommandOut(BaseModel):
    meeting_id: str
    identity: str
    sessions: int = Field(description="participant sessions of the identity the command reached")


def _settings_out(settings: pb.MeetingSettings) -> MeetingSettingsOut:
    return MeetingSettingsOut(
        max_participants=settings.max_participants or None,
        empty_timeout_seconds=settings.empty_timeout_seconds or None,
        metadata=settings.metadata or None,
    )


def _failed(exc: McCallFailed) -> MeetingApiError:
    reason = exc.reason
    if reason == "timeout":
        return MeetingApiError(503, "unavailable", "mc_timeout", "the meeting's MC did not answer")
    if reason == "unsupported":
        return MeetingApiError(
            503, "unavailable", "mc_unsupported", "the meeting's MC does not serve the meeting API"
        )
    if reason == "state_unavailable":
        return MeetingApiError(
            503, "unavailable", "mc_state_unavailable", "the meeting's state store is down"
        )
    return MeetingApiError(503, "unavailable", "mc_unreachable", "the meeting's MC is unreachable")


_NOT_HOSTED = MeetingApiError(
    409,
    "conflict",
    "not_hosted",
    "the meeting's MC no longer hosts it (it ended or moved); a join places it again",
)


def mount_meetings_api(
    app: FastAPI,
    *,
    store: GcStore,
    placement: PlacementService,
    region: str,
    access: GcAccess,
    error_model: type[BaseModel],
) -> None:
    """Add the meeting API's routes (module docstring) and its error handler to `app`."""

    def mcs() -> McClient:
        # Looked up per call: the app is also built without a placement (its OpenAPI document).
        return placement.mc_client

    @app.exception_handler(MeetingApiError)
    async def _api_error(request: Request, exc: MeetingApiError) -> JSONResponse:
        body = {"error": exc.error, "reason": exc.reason, "message": str(exc)}
        return JSONResponse(body, exc.status)

    authorization_header = Header(
        default=None,
        alias="Authorization",
        description="`Bearer <access token>`: admin, or host of this meeting where allowed",
    )

    def allowed(
        authorization: str | None, meeting_id: str | None, *, host_may: bool, write: bool
    ) -> AccessGrant | None:
        return decide_meeting_access(
            access.present(authorization),
            meeting_id,
            host_may=host_may,
            write=write,
            allow_guests=access.allow_guests,
        )

    def responses(*statuses: int) -> dict[int | str, Any]:
        return {s: {"model": error_model} for s in (400, 401, 403, *statuses)}

    async def live(meeting_id: str) -> LivePlacement:
        placed = await store.live_placement(meeting_id, region)
        if placed is None:
            raise MeetingApiError(
                404, "not_found", "meeting_not_found", "the meeting has no live assignment"
            )
        return placed

    async def hosting(meeting_id: str) -> tuple[str, str]:
        """(MC id, gRPC endpoint) of the MC hosting the meeting, or a MeetingApiError."""
        placed = await live(meeting_id)
        row = placed.assignment
        if row.state != AssignmentState.ACTIVE or row.mc_id is None:
            raise MeetingApiError(
                409, "conflict", "being_placed", "the meeting is being placed; try again"
            )
        if placed.controller is None:
            raise MeetingApiError(
                503, "unavailable", "mc_gone", "the meeting's MC is no longer registered"
            )
        return row.mc_id, placed.controller.grpc_endpoint

    async def call(work: Callable[[], Awaitable[_T]]) -> _T:
        try:
            return await work()
        except McCallFailed as exc:
            raise _failed(exc) from None

    async def command(
        meeting_id: str, what: str, *, identity: str = "", muted: bool = False
    ) -> tuple[str, CommandOutcome]:
        mc_id, endpoint = await hosting(meeting_id)
        outcome = await call(
            lambda: mcs().command(
                endpoint,
                what,  # type: ignore[arg-type]
                meeting_id,
                mc_id=mc_id,
                identity=identity,
                muted=muted,
            )
        )
        if not outcome.hosted:
            raise _NOT_HOSTED
        return mc_id, outcome

    def checked_id(meeting_id: str) -> str:
        with invalid_field_as(InvalidGcRequest):
            return validate_id(meeting_id, "meeting_id")

    def checked_identity(identity: str) -> str:
        with invalid_field_as(InvalidGcRequest):
            return validate_user_id(identity, "identity")

    @app.post("/v1/meetings", responses=responses(503), status_code=200)
    async def create_meeting(
        body: MeetingCreateIn = Body(default_factory=MeetingCreateIn),  # noqa: B008
        authorization: str | None = authorization_header,
    ) -> MeetingCreatedOut:
        """Create a meeting with settings — placed at once on an MC, which enforces them — or
        answer the one already placed (`created: false`, its own settings). Admin only."""
        meeting_id = checked_id(body.meeting_id) if body.meeting_id is not None else None
        with invalid_field_as(InvalidGcRequest):
            settings = validate_settings(
                body.max_participants, body.empty_timeout_seconds, body.metadata
            )
        grant = allowed(authorization, meeting_id, host_may=False, write=True)
        assert grant is not None  # writes always need a token
        if meeting_id is None:
            meeting_id = "m-" + secrets.token_hex(8)
        creator = validate_joiner(grant.identity, None)
        result = await placement.join(meeting_id, joiner=creator, settings=settings)
        view = await _roster_or_none(mcs(), result.mc_grpc_endpoint, meeting_id, result.mc_id)
        return MeetingCreatedOut(
            meeting_id=meeting_id,
            created=not result.reused,
            region=result.region,
            mc_id=result.mc_id,
            settings=None if view is None else _settings_out(view.settings),
        )

    @app.get("/v1/meetings/{meeting_id}", responses=responses(404))
    async def meeting(
        meeting_id: str, authorization: str | None = authorization_header
    ) -> MeetingDetailOut:
        """The meeting's live assignment (claimed while being placed, then active) with the
        live view of its MC: roster size and settings. Admin, or the meeting's host."""
        checked_id(meeting_id)
        allowed(authorization, meeting_id, host_may=True, write=False)
        placed = await live(meeting_id)
        row = placed.assignment
        out = MeetingDetailOut(
            meeting_id=row.meeting_id,
            region=row.region,
            state=row.state.value,
            mc_id=row.mc_id,
            mh_ids=list(row.mh_ids),
            created_at=row.claimed_at,
            assigned_at=row.assigned_at,
            participants=row.participants,
            mc_answer="not_asked",
        )
        if row.state != AssignmentState.ACTIVE or row.mc_id is None or placed.controller is None:
            return out
        try:
            view = await mcs().roster(
                placed.controller.grpc_endpoint,
                meeting_id,
                mc_id=row.mc_id,
                timeout=LIVE_VIEW_TIMEOUT_S,
            )
        except McCallFailed as exc:
            return out.model_copy(update={"mc_answer": _failed(exc).reason})
        if not view.hosted:
            return out.model_copy(update={"mc_answer": "not_hosted"})
        return out.model_copy(
            update={
                "mc_answer": "ok",
                "live_participants": len(view.participants),
                "connected": sum(1 for p in view.participants if p.connected),
                "settings": _settings_out(view.settings),
            }
        )

    @app.get("/v1/meetings/{meeting_id}/participants", responses=responses(404, 409, 503))
    async def participants(
        meeting_id: str, authorization: str | None = authorization_header
    ) -> ParticipantsOut:
        """The live roster, read from the meeting's MC (after a failover: the MC that took the
        meeting over). Admin, or the meeting's host."""
        checked_id(meeting_id)
        allowed(authorization, meeting_id, host_may=True, write=False)
        mc_id, endpoint = await hosting(meeting_id)
        view = await call(lambda: mcs().roster(endpoint, meeting_id, mc_id=mc_id))
        if not view.hosted:
            raise _NOT_HOSTED
        return ParticipantsOut(
            meeting_id=meeting_id,
            mc_id=mc_id,
            host_id=view.host_id or None,
            participants=[
                ParticipantOut(
                    identity=p.user_id,
                    participant_id=p.participant_id,
                    name=p.display_name,
                    role=p.role,
                    host=p.participant_id == view.host_id,
                    muted=p.muted,
                    host_muted=p.host_muted,
                    connected=p.connected,
                    joined_at=datetime.fromtimestamp(p.joined_at_ms / 1000, UTC),
                )
                for p in view.participants
            ],
        )

    @app.delete("/v1/meetings/{meeting_id}", responses=responses(404, 409, 503))
    async def end_meeting(
        meeting_id: str, authorization: str | None = authorization_header
    ) -> MeetingEndedOut:
        """End the meeting: every client gets `participant_left {reason: meeting_ended}`, the
        meeting's state is deleted and its assignment ended; a later join starts a new one.
        Admin only."""
        checked_id(meeting_id)
        allowed(authorization, meeting_id, host_may=False, write=True)
        mc_id, outcome = await command(meeting_id, "end")
        await store.end_assignment_if(meeting_id, region, mc_id, utcnow())
        return MeetingEndedOut(meeting_id=meeting_id, ended=True, participants=outcome.affected)

    @app.delete(
        "/v1/meetings/{meeting_id}/participants/{identity}", responses=responses(404, 409, 503)
    )
    async def remove_participant(
        meeting_id: str, identity: str, authorization: str | None = authorization_header
    ) -> ParticipantCommandOut:
        """Remove the identity: its sessions get `participant_left {reason: removed}`, the
        others see it leave, and it cannot join this meeting again (for as long as the
        meeting lives, whatever its token). An identity not in the meeting is barred all the
        same (`sessions: 0`). Admin only."""
        checked_id(meeting_id)
        checked_identity(identity)
        allowed(authorization, meeting_id, host_may=False, write=True)
        _, outcome = await command(meeting_id, "remove", identity=identity)
        return ParticipantCommandOut(
            meeting_id=meeting_id, identity=identity, sessions=outcome.affected
        )

    @app.post(
        "/v1/meetings/{meeting_id}/participants/{identity}/mute",
        responses=responses(404, 409, 503),
    )
    async def mute_participant(
        meeting_id: str,
        identity: str,
        body: MuteIn = Body(default_factory=MuteIn),  # noqa: B008
        authorization: str | None = authorization_header,
    ) -> ParticipantCommandOut:
        """Host-mute (or, with `{"muted": false}`, unmute) the identity, as a host's
        `host_mute`: its client gets `muted {by: "api"}`, everyone `participant_updated`.
        404 `participant_not_found` when it has no session in the meeting. Admin, or the
        meeting's host."""
        checked_id(meeting_id)
        checked_identity(identity)
        allowed(authorization, meeting_id, host_may=True, write=True)
        _, outcome = await command(meeting_id, "mute", identity=identity, muted=body.muted)
        if outcome.affected == 0:
            raise MeetingApiError(
                404, "not_found", "participant_not_found", "no participant with that identity"
            )
        return ParticipantCommandOut(
            meeting_id=meeting_id, identity=identity, sessions=outcome.affected
        )


async def _roster_or_none(
    mcs: McClient, endpoint: str, meeting_id: str, mc_id: str
) -> pb.MeetingRosterResponse | None:
    try:
        view = await mcs.roster(endpoint, meeting_id, mc_id=mc_id)
    except McCallFailed:
        return None
    return view if view.hosted else None
