"""The GC's HTTP API (FastAPI): placement and join answers, the read API, the join page,
the dashboard, the API documentation (`/docs`, offline), health and metrics.

Errors map here and only here: InvalidGcRequest and a malformed request (body, query) → 400
with the offending field as `reason`, NoControllerAvailable / NoMediaHandlerAvailable / a
database outage → 503, an access refusal (`darktower.gc.access`) → 401 `unauthenticated` or
403 `forbidden`, each as `{"error", "reason", "message"}`. Messages never echo the input.
The meeting API (`darktower.gc.meetings_api`: create, read, end, remove, mute) adds its own
refusals in the same shape: 404 `not_found`, 409 `conflict`, 503 `unavailable` (its MC).

Access (`darktower.gc.access`): the join needs an access token for its meeting (or guests
allowed); the operator reads need one with `admin` (or guests allowed); health, metrics, the
JWKS, the docs and the pages are open (health and metrics: on `GC_HEALTH_BIND` instead when set).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from darktower.common.clock import utcnow
from darktower.common.errors import invalid_field_as
from darktower.common.ids import ID_FIELD_PATTERN, validate_id
from darktower.common.limits import MAX_DISPLAY_NAME_CHARS
from darktower.gc.access import AccessRefused, GcAccess
from darktower.gc.api_docs import mount_api_docs
from darktower.gc.dashboard import mount_dashboard
from darktower.gc.domain import Assignment, Controller, MediaHandler
from darktower.gc.errors import (
    GcError,
    InvalidGcRequest,
    NoControllerAvailable,
    NoMediaHandlerAvailable,
)
from darktower.gc.http_metrics import install_http_metrics
from darktower.gc.join import USER_ID_PATTERN, JoinResult, PlacementService
from darktower.gc.join_page import mount_join_page
from darktower.gc.limits import HttpLimits, api_key_of, install_limits
from darktower.gc.meetings_api import mount_meetings_api
from darktower.gc.ops_http import IsReady, add_ops_routes
from darktower.gc.store import GcStore, StoreError

__all__ = ["MAX_MEETINGS_LIMIT", "MAX_MEETINGS_OFFSET", "create_app"]

MAX_MEETINGS_LIMIT = 1000
MAX_MEETINGS_OFFSET = 100_000


class JoinIn(BaseModel):
    """Who joins; both optional. With an access token the joiner is the token's: a `user_id`
    other than its `sub` is refused (403 `identity_mismatch`), `display_name` is used only
    when the token has no `name`. A guest (no token, `GC_ALLOW_GUESTS=true`) is named here;
    the same `user_id` again is how a guest reconnects as the same participant."""

    user_id: str | None = Field(
        default=None,
        pattern=USER_ID_PATTERN,
        description="1-64 of A-Z a-z 0-9 . _ - @; with a token: absent or the token's `sub`; "
        "a guest without one: a random `u-<hex>` id",
    )
    display_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_DISPLAY_NAME_CHARS,
        description="1-100 characters (NFC, trimmed), no control, format (zero-width, "
        "bidirectional) or invisible characters; absent: the token's `name`, else its `sub`; "
        'a guest: "Guest"',
    )
    unreachable_mc_id: str | None = Field(
        default=None,
        pattern=ID_FIELD_PATTERN,
        description="the MC this client was sent to and could not reach (its WebSocket "
        "connect refused or timed out): the GC checks that MC itself and, if it does not "
        "answer either, marks it unhealthy and places the meeting anew at once; if it "
        "answers, the meeting stays (docs/applications.md)",
    )


class MhOut(BaseModel):
    mh_id: str
    webtransport_endpoint: str
    role: str


class IceServerOut(BaseModel):
    """One entry of the browser's `RTCPeerConnection` `iceServers`."""

    urls: list[str] = Field(description="stun:, turn: or turns: URLs (GC_ICE_SERVERS)")
    # A STUN entry has no credentials: its keys are left out, not sent as nulls (a browser's
    # RTCIceServer would take null for the string "null").
    username: str | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="TURN only: `<unix expiry>:<user_id>` (the TURN REST API scheme coturn "
        "checks with use-auth-secret)",
    )
    credential: str | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="TURN only: base64(HMAC-SHA1(GC_TURN_SECRET, username)); valid until "
        "the expiry in `username`",
    )


class JoinOut(BaseModel):
    meeting_id: str
    region: str
    mc_id: str
    mc_grpc_endpoint: str
    mc_client_endpoint: str | None
    media_handlers: list[MhOut]
    reused: bool
    user_id: str = Field(description="the joiner's user id (given, or generated)")
    display_name: str
    join_token: str = Field(
        description="short-lived Ed25519 JWT signed by this GC for this meeting and user; "
        "sent as the first signaling frame (`join`)"
    )
    signaling_url: str | None = Field(
        description="the MC's client signaling WebSocket (`ws(s)://<client endpoint>"
        "/v1/signaling`); null when the MC registered no client endpoint"
    )
    ice_servers: list[IceServerOut] = Field(
        default_factory=list,
        description="STUN/TURN servers for the browser's RTCPeerConnections (GC_ICE_SERVERS); "
        "TURN ones with credentials minted for this joiner; empty when none are configured",
    )


class ControllerOut(BaseModel):
    id: str
    region: str
    health: str
    grpc_endpoint: str
    webtransport_endpoint: str | None
    max_meetings: int
    current_meetings: int
    max_participants: int
    current_participants: int
    cpu_percent: float | None
    memory_percent: float | None
    last_heartbeat_at: datetime | None
    heartbeat_age_s: float | None


class MediaHandlerOut(BaseModel):
    id: str
    region: str
    zone: str | None
    health: str
    webtransport_endpoint: str
    max_streams: int
    current_streams: int
    last_report_at: datetime | None


class MeetingLoadOut(BaseModel):
    meeting_id: str
    region: str
    mc_id: str
    participants: int
    assigned_at: datetime | None


class MeetingsOut(BaseModel):
    total: int = Field(description="live meetings in all, of which `meetings` is the top")
    meetings: list[MeetingLoadOut] = Field(
        description="most participants first, then by meeting id; at most `limit`"
    )


class PlacementEventOut(BaseModel):
    at: datetime
    meeting_id: str
    mc_id: str | None = Field(description='the MC placed on, refusing, or (on "moved") left')
    outcome: str = Field(
        description='"accepted", "reused", "moved" (taken off its MC), or why it failed'
    )
    detail: str
    previous_mc_id: str | None = Field(
        default=None,
        description='on "moved", and on the "accepted" that placed the meeting anew: the MC '
        "it left",
    )
    move_reason: str | None = Field(
        default=None,
        description="why it left that MC: unhealthy, draining, stale, gone or restarted",
    )


class ErrorOut(BaseModel):
    error: Literal[
        "invalid_argument",
        "unauthenticated",
        "forbidden",
        "unavailable",
        "payload_too_large",
        "rate_limited",
        "not_found",
        "conflict",
    ]
    reason: str
    message: str


def _age(then: datetime | None) -> float | None:
    return None if then is None else round((utcnow() - then).total_seconds(), 3)


def _controller(c: Controller) -> ControllerOut:
    return ControllerOut(
        id=c.id,
        region=c.region,
        health=c.health.value,
        grpc_endpoint=c.grpc_endpoint,
        webtransport_endpoint=c.webtransport_endpoint,
        max_meetings=c.max_meetings,
        current_meetings=c.current_meetings,
        max_participants=c.max_participants,
        current_participants=c.current_participants,
        cpu_percent=c.cpu_percent,
        memory_percent=c.memory_percent,
        last_heartbeat_at=c.last_heartbeat_at,
        heartbeat_age_s=_age(c.last_heartbeat_at),
    )


def _handler(h: MediaHandler) -> MediaHandlerOut:
    return MediaHandlerOut(
        id=h.id,
        region=h.region,
        zone=h.zone,
        health=h.health.value,
        webtransport_endpoint=h.webtransport_endpoint,
        max_streams=h.max_streams,
        current_streams=h.current_streams,
        last_report_at=h.last_report_at,
    )


def _join(r: JoinResult) -> JoinOut:
    return JoinOut(
        meeting_id=r.meeting_id,
        region=r.region,
        mc_id=r.mc_id,
        mc_grpc_endpoint=r.mc_grpc_endpoint,
        mc_client_endpoint=r.mc_client_endpoint,
        media_handlers=[
            MhOut(mh_id=m.mh_id, webtransport_endpoint=m.webtransport_endpoint, role=m.role)
            for m in r.media_handlers
        ],
        reused=r.reused,
        user_id=r.user_id,
        display_name=r.display_name,
        join_token=r.join_token,
        signaling_url=r.signaling_url,
        ice_servers=[
            IceServerOut(urls=list(i.urls), username=i.username, credential=i.credential)
            for i in r.ice_servers
        ],
    )


def _meeting_load(a: Assignment) -> MeetingLoadOut:
    assert a.mc_id is not None  # ACTIVE rows only
    return MeetingLoadOut(
        meeting_id=a.meeting_id,
        region=a.region,
        mc_id=a.mc_id,
        participants=a.participants,
        assigned_at=a.assigned_at,
    )


def _invalid_request(exc: RequestValidationError) -> tuple[str, str]:
    """The field a malformed request got wrong and pydantic's message (never the input)."""
    errors = exc.errors()
    if not errors:
        return "body", "malformed request"
    err = errors[0]
    if err.get("type") == "json_invalid":
        return "body", "body: not valid JSON"
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
    field = ".".join(loc) or str((err.get("loc") or ("body",))[0])
    return field, f"{field}: {err.get('msg', 'invalid')}"


def _error(
    status: int, kind: Literal["invalid_argument", "unavailable"], reason: str, message: str
) -> JSONResponse:
    return JSONResponse(ErrorOut(error=kind, reason=reason, message=message).model_dump(), status)


def create_app(
    store: GcStore,
    placement: PlacementService,
    *,
    region: str,
    is_ready: IsReady,
    access: GcAccess,
    limits: HttpLimits | None = None,
    ops_routes: bool = True,
) -> FastAPI:
    """The GC's HTTP app; `access` decides who may join and read (see the module docstring).
    `ops_routes` False: no `/health/*` and `/metrics` here (they have a bind of their own)."""
    app = FastAPI(
        title="darktower Global Controller",
        version="1",
        description="Places meetings on meeting controllers; the fleet's registry.",
        # FastAPI's Swagger UI and ReDoc pages load their code from a CDN: `/docs` is ours
        # (`mount_api_docs`), served from the package; there is no `/redoc`.
        docs_url=None,
        redoc_url=None,
        # Every route may answer 413 (`darktower.gc.limits.BodyLimit`).
        responses={413: {"model": ErrorOut, "description": "request body over the cap"}},
    )
    errors = {
        400: {"model": ErrorOut},
        429: {
            "model": ErrorOut,
            "description": "a join rate limit (per client IP, per API key)",
            "headers": {
                "Retry-After": {
                    "description": "seconds until a join is accepted again",
                    "schema": {"type": "integer"},
                }
            },
        },
        503: {"model": ErrorOut},
    }

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI answers a body it cannot even parse (not UTF-8, say) with its own 400
        # shape; ours is the documented one. Every other HTTP error keeps FastAPI's handling.
        if exc.status_code == 400:
            return _error(400, "invalid_argument", "body", "body: not valid JSON")
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _malformed(request: Request, exc: RequestValidationError) -> JSONResponse:
        field, message = _invalid_request(exc)
        return _error(400, "invalid_argument", field, message)

    @app.exception_handler(InvalidGcRequest)
    async def _invalid(request: Request, exc: InvalidGcRequest) -> JSONResponse:
        return _error(400, "invalid_argument", exc.field, str(exc))

    @app.exception_handler(AccessRefused)
    async def _refused(request: Request, exc: AccessRefused) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        body = ErrorOut(error=exc.error, reason=exc.reason, message=str(exc))
        return JSONResponse(body.model_dump(), exc.status, headers=headers)

    authorization_header = Header(
        default=None,
        alias="Authorization",
        description="`Bearer <access token>` (an API key's HS256 JWT, docs/applications.md)",
    )

    def operator(authorization: str | None = authorization_header) -> None:
        """Operator reads need an access token with `admin` (unless guests are allowed)."""
        access.check_operator(authorization)

    operator_only = [Depends(operator)]
    refusals: dict[int | str, Any] = {
        401: {"model": ErrorOut},
        403: {"model": ErrorOut},
    }

    @app.exception_handler(NoControllerAvailable)
    async def _no_mc(request: Request, exc: NoControllerAvailable) -> JSONResponse:
        return _error(503, "unavailable", exc.reason, exc.detail)

    @app.exception_handler(NoMediaHandlerAvailable)
    async def _no_mh(request: Request, exc: NoMediaHandlerAvailable) -> JSONResponse:
        return _error(503, "unavailable", "no_media_handler", str(exc))

    @app.exception_handler(StoreError)
    async def _store_down(request: Request, exc: StoreError) -> JSONResponse:
        return _error(503, "unavailable", "database", "the registry database is unavailable")

    @app.exception_handler(GcError)
    async def _gc_error(request: Request, exc: GcError) -> JSONResponse:
        return _error(503, "unavailable", exc.code, "the global controller cannot answer now")

    join_responses: dict[int | str, Any] = dict(refusals)
    for status, response in errors.items():
        join_responses[status] = response

    @app.post("/v1/meetings/{meeting_id}/join", responses=join_responses)
    async def join(
        meeting_id: str,
        body: JoinIn | None = None,
        authorization: str | None = authorization_header,
    ) -> JoinOut:
        """Place the meeting (or find where it is) and answer its MC and MHs, with a fresh
        join token for the joiner and the MC's signaling URL. Needs an access token for this
        meeting (`Authorization: Bearer …`), unless guests are allowed: 401 without a valid
        one, 403 for another meeting's or a `user_id` that is not the token's."""
        with invalid_field_as(InvalidGcRequest):
            validate_id(meeting_id, "meeting_id")  # first: a bad id is a 400 whoever asks
        wanted = body or JoinIn()
        joiner = access.joiner(
            authorization,
            meeting_id,
            body_user_id=wanted.user_id,
            body_display_name=wanted.display_name,
        )
        result = await placement.join(
            meeting_id, joiner=joiner, unreachable_mc_id=wanted.unreachable_mc_id
        )
        return _join(result)

    @app.get(
        "/v1/meetings",
        responses={400: {"model": ErrorOut}, **refusals},
        dependencies=operator_only,
    )
    async def meetings(
        limit: int = Query(default=100, ge=1, le=MAX_MEETINGS_LIMIT),
        offset: int = Query(
            default=0, ge=0, le=MAX_MEETINGS_OFFSET, description="meetings to skip (paging)"
        ),
    ) -> MeetingsOut:
        """The placed meetings of this GC's region with their MC and participants, most
        participants first; `total` counts them all. Paged by `offset` and `limit`."""
        rows, total = await store.list_live_meetings(region, limit=offset + limit)
        return MeetingsOut(total=total, meetings=[_meeting_load(a) for a in rows[offset:]])

    @app.get("/v1/controllers", responses=refusals, dependencies=operator_only)
    async def controllers() -> list[ControllerOut]:
        return [_controller(c) for c in await store.list_controllers()]

    @app.get("/v1/media-handlers", responses=refusals, dependencies=operator_only)
    async def media_handlers() -> list[MediaHandlerOut]:
        return [_handler(h) for h in await store.list_media_handlers()]

    @app.get("/v1/placements/recent", responses=refusals, dependencies=operator_only)
    async def recent() -> list[PlacementEventOut]:
        return [
            PlacementEventOut(
                at=e.at,
                meeting_id=e.meeting_id,
                mc_id=e.mc_id,
                outcome=e.outcome,
                detail=e.detail,
                previous_mc_id=e.previous_mc_id,
                move_reason=e.move_reason,
            )
            for e in reversed(placement.recent)
        ]

    if ops_routes:  # else served on GC_HEALTH_BIND only (`darktower.gc.ops_http`)
        add_ops_routes(app, is_ready)

    mount_meetings_api(
        app, store=store, placement=placement, region=region, access=access, error_model=ErrorOut
    )
    mount_join_page(app)
    mount_api_docs(app)
    mount_dashboard(app)
    install_limits(app, limits or HttpLimits(), api_key=api_key_of(access.key_id))
    # Outermost: every request is counted, the limits' refusals too.
    install_http_metrics(app)
    return app
