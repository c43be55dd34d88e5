"""The GC's operational routes: `/health/live`, `/health/ready` and `/metrics`, unauthenticated
(probes and Prometheus carry no token). Served with the API on `GC_HTTP_BIND`, or, when
`GC_HEALTH_BIND` is set, only on that address (an internal interface), by an app of their own
that has nothing else (README "Access model")."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from darktower.gc.http_metrics import install_http_metrics
from darktower.gc.limits import HttpLimits, install_limits
from darktower.runtime.metrics_http import metrics_response

__all__ = ["IsReady", "add_ops_routes", "create_ops_app"]

IsReady = Callable[[], Awaitable[tuple[bool, str]]]


def add_ops_routes(app: FastAPI, is_ready: IsReady) -> None:
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

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus"}},
    )
    async def metrics(request: Request) -> Response:
        """Prometheus metrics in the text exposition format (OpenMetrics when the `Accept`
        header asks for `application/openmetrics-text`)."""
        return metrics_response(request)


def create_ops_app(is_ready: IsReady, limits: HttpLimits) -> FastAPI:
    """The app of `GC_HEALTH_BIND`: the operational routes only, under the same body cap and
    request metrics as the API (no OpenAPI document, no pages)."""
    app = FastAPI(
        title="darktower Global Controller (health and metrics)",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    add_ops_routes(app, is_ready)
    install_limits(app, limits)
    install_http_metrics(app)
    return app
