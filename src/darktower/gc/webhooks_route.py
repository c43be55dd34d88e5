"""Webhook health on the GC's HTTP app, for the dashboard and operators.

    GET /v1/webhooks     an operator read (admin, or guests allowed)     200 WebhooksOut

What this GC process delivers (`GcWebhooks`): whether webhooks are on, how many URLs (never
the URLs: one may carry a token), the event partitions it holds of 16, what it delivered and
how many attempts failed (the last reason and when), and its backlog — events not yet
delivered in its partitions and the age of the oldest. `enabled: false` when
`GC_WEBHOOK_URLS` is empty. The counters are this process's since its start; the Prometheus
metrics (`gc_webhook_*`) are the same numbers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Header
from pydantic import BaseModel

from darktower.gc.access import GcAccess
from darktower.gc.http import ErrorOut
from darktower.gc.webhooks import GcWebhooks
from darktower.webhooks.keys import PARTITIONS

__all__ = ["WebhooksOut", "mount_webhooks_status"]


class WebhooksOut(BaseModel):
    enabled: bool
    urls: int = 0
    partitions: int = PARTITIONS
    partitions_held: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    last_delivered_at: str | None = None
    last_failure_reason: str | None = None
    last_failure_at: str | None = None
    queue_depth: int = 0
    oldest_undelivered_age_seconds: float = 0.0


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, tz=UTC).isoformat(timespec="milliseconds")


def webhooks_out(webhooks: GcWebhooks | None) -> WebhooksOut:
    if webhooks is None:
        return WebhooksOut(enabled=False)
    stats = webhooks.dispatcher.stats
    return WebhooksOut(
        enabled=True,
        urls=len(webhooks.dispatcher.urls),
        partitions_held=stats.partitions_held,
        delivered=stats.delivered,
        failed_attempts=stats.failed_attempts,
        last_delivered_at=_iso(stats.last_delivered_at),
        last_failure_reason=stats.last_failure_reason,
        last_failure_at=_iso(stats.last_failure_at),
        queue_depth=stats.queue_depth,
        oldest_undelivered_age_seconds=round(stats.oldest_undelivered_age_seconds, 3),
    )


def mount_webhooks_status(app: FastAPI, webhooks: GcWebhooks | None, access: GcAccess) -> None:
    """Add `GET /v1/webhooks` to `app` (the module docstring); refusals as every operator read."""
    authorization_header = Header(
        default=None, alias="Authorization", description="`Bearer <access token>` with admin"
    )

    refusals: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}}

    @app.get("/v1/webhooks", response_model=WebhooksOut, responses=refusals)
    async def webhooks_status(authorization: str | None = authorization_header) -> WebhooksOut:
        """Webhook delivery by this GC: on or off, delivered, failures, backlog (operators)."""
        access.check_operator(authorization)
        return webhooks_out(webhooks)
