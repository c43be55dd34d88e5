"""The GC's HTTP API (FastAPI): placement, the read API, health and metrics.

Errors map here and only here: InvalidArgument → 400, NoControllerAvailable /
NoMediaHandlerAvailable / a database outage → 503, each as `{"error", "reason", "message"}`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Literal

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from darktower.gc.dashboard import mount_dashboard
from darktower.gc.errors import (
    GcError,
    InvalidArgument,
    NoControllerAvailable,
    NoMediaHandlerAvailable,
)
from darktower.gc.placement.service import JoinResult, PlacementService
from darktower.gc.store import Controller, GcStore, MediaHandler, StoreError

__all__ = ["create_app"]


class MhOut(BaseModel):
    mh_id: str
    webtransport_endpoint: str
    role: str


class JoinOut(BaseModel):
    meeting_id: str
    region: str
    mc_id: str
    mc_grpc_endpoint: str
    mc_client_endpoint: str | None
    media_handlers: list[MhOut]
    reused: bool


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


class MeetingOut(BaseModel):
    meeting_id: str
    region: str
    state: str
    mc_id: str | None
    mh_ids: list[str]
    assigned_at: datetime | None


class PlacementEventOut(BaseModel):
    at: datetime
    meeting_id: str
    mc_id: str | None
    outcome: str
    detail: str


class ErrorOut(BaseModel):
    error: Literal["invalid_argument", "unavailable"]
    reason: str
    message: str


def _age(then: datetime | None) -> float | None:
    return None if then is None else round((datetime.now(UTC) - then).total_seconds(), 3)


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
    )


def _error(
    status: int, kind: Literal["invalid_argument", "unavailable"], reason: str, message: str
) -> JSONResponse:
    return JSONResponse(ErrorOut(error=kind, reason=reason, message=message).model_dump(), status)


def create_app(
    store: GcStore,
    placement: PlacementService,
    *,
    region: str,
    is_ready: Callable[[], Awaitable[tuple[bool, str]]],
) -> FastAPI:
    app = FastAPI(
        title="darktower Global Controller",
        version="1",
        description="Places meetings on meeting controllers; the fleet's registry.",
    )
    errors = {400: {"model": ErrorOut}, 503: {"model": ErrorOut}}

    @app.exception_handler(InvalidArgument)
    async def _invalid(request: Request, exc: InvalidArgument) -> JSONResponse:
        return _error(400, "invalid_argument", exc.field, str(exc))

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

    @app.post("/v1/meetings/{meeting_id}/join", responses=errors)  # type: ignore[arg-type]
    async def join(meeting_id: str) -> JoinOut:
        """Place the meeting (or find where it is) and answer its MC and MHs."""
        return _join(await placement.join(meeting_id))

    @app.get("/v1/meetings/{meeting_id}", responses={404: {"description": "not placed"}})
    async def meeting(meeting_id: str) -> MeetingOut:
        """The meeting's live assignment (claimed while being placed, then active)."""
        live = await store.active_assignment(meeting_id, region)
        if live is None:
            raise HTTPException(404, "the meeting has no live assignment")
        return MeetingOut(
            meeting_id=live.meeting_id,
            region=live.region,
            state=live.state.value,
            mc_id=live.mc_id,
            mh_ids=list(live.mh_ids),
            assigned_at=live.assigned_at,
        )

    @app.get("/v1/controllers")
    async def controllers() -> list[ControllerOut]:
        return [_controller(c) for c in await store.list_controllers()]

    @app.get("/v1/media-handlers")
    async def media_handlers() -> list[MediaHandlerOut]:
        return [_handler(h) for h in await store.list_media_handlers()]

    @app.get("/v1/placements/recent")
    async def recent() -> list[PlacementEventOut]:
        return [
            PlacementEventOut(
                at=e.at, meeting_id=e.meeting_id, mc_id=e.mc_id, outcome=e.outcome, detail=e.detail
            )
            for e in reversed(placement.recent)
        ]

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/health/ready")
    async def ready(response: Response) -> dict[str, str]:
        ok, why = await is_ready()
        if not ok:
            response.status_code = 503
            return {"status": "not ready", "reason": why}
        return {"status": "ready"}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    mount_dashboard(app)
    return app
