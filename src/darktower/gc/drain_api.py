"""An operator's drain, on the GC's HTTP app (README "Rolling upgrades").

    POST /v1/controllers/{controller_id}/drain     admin only      202 {controller_id, meetings}

The GC asks that MC to drain through `DrainController`, an RPC of the MC's own service, signed
with a GC token for that MC only (`aud` = its id). The MC drains as on SIGTERM: it stops
admitting at once, migrates its meetings to other MCs (the MC's live migration, README
"Rolling upgrades"), ends what could not move at its deadline and exits 0. The answer is 202:
the drain has started.

Who may: an access token with `admin` — always, also when the GC allows guests (a drain is an
operator's write, not a read): no token 401 `token_missing`, a bad one 401 with its reason, a
token without `admin` 403 `admin_required`. A malformed id is 400, an MC the registry does not
know 404 `unknown_controller`, an MC that does not answer 503 `mc_unreachable`, one that
predates the RPC 503 `mc_unsupported`. Nothing is changed by a refused request.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from darktower.auth.access_tokens import AccessGrant, InvalidAccessToken
from darktower.common.errors import invalid_field_as
from darktower.common.ids import validate_id
from darktower.gc.access import AccessRefused, GcAccess, Presented
from darktower.gc.errors import InvalidGcRequest
from darktower.gc.mc_client import McClient
from darktower.gc.store import GcStore

__all__ = ["DrainOut", "decide_drain_access", "mount_drain_api"]

log = logging.getLogger(__name__)


class DrainOut(BaseModel):
    controller_id: str
    meetings: int  # hosted when the drain started


def decide_drain_access(presented: Presented) -> AccessGrant:
    """The admin grant that may drain an MC, else `AccessRefused` (guests never may)."""
    if isinstance(presented, InvalidAccessToken):
        raise AccessRefused(401, presented.reason, str(presented))
    if not isinstance(presented, AccessGrant):
        raise AccessRefused(401, "token_missing", "an access token is required (Bearer)")
    if not presented.admin:
        raise AccessRefused(
            403, "admin_required", "draining an MC needs an access token with admin"
        )
    return presented


def _error(status: int, error: str, reason: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "reason": reason, "message": message}, status)


def mount_drain_api(
    app: FastAPI,
    *,
    store: GcStore,
    mc_client: McClient,
    access: GcAccess,
    error_model: type[BaseModel],
) -> None:
    """Add `POST /v1/controllers/{controller_id}/drain` to `app` (module docstring)."""
    authorization_header = Header(
        default=None, alias="Authorization", description="`Bearer <access token>` with admin"
    )
    responses: dict[int | str, dict[str, Any]] = {
        code: {"model": error_model} for code in (400, 401, 403, 404, 503)
    }

    @app.post(
        "/v1/controllers/{controller_id}/drain",
        status_code=202,
        responses=responses,
        response_model=DrainOut,
    )
    async def drain(
        controller_id: str, authorization: str | None = authorization_header
    ) -> DrainOut | JSONResponse:
        """Ask the MC to drain: it migrates its meetings to other MCs and exits (admin)."""
        grant = decide_drain_access(access.present(authorization))
        with invalid_field_as(InvalidGcRequest):
            validate_id(controller_id, "controller_id")
        controller = await store.get_controller(controller_id)
        if controller is None:
            return _error(404, "not_found", "unknown_controller", "no such meeting controller")
        outcome = await mc_client.drain(controller.grpc_endpoint, mc_id=controller.id)
        if isinstance(outcome, str):
            text = {
                "mc_unsupported": "the meeting controller does not support draining",
                "mc_refused": "the meeting controller refused to drain",
            }.get(outcome, "the meeting controller did not answer")
            return _error(503, "unavailable", outcome, text)
        log.info(
            "drain of %s asked by %s (%d meetings)", controller.id, grant.identity[:64], outcome
        )
        return DrainOut(controller_id=controller.id, meetings=outcome)
