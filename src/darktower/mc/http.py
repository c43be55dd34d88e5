"""The MC's health HTTP endpoint: `/health/live`, `/health/ready`, `/metrics`."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request, Response

from darktower.runtime.metrics_http import metrics_response

__all__ = ["health_app"]


def health_app(is_ready: Callable[[], tuple[bool, str]]) -> FastAPI:
    """`is_ready()` answers (ready, why not) — the reason is shown on a 503."""
    app = FastAPI(title="darktower MC health", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/health/ready")
    async def ready(response: Response) -> dict[str, str]:
        ok, why = is_ready()
        if not ok:
            response.status_code = 503
            return {"status": "not ready", "reason": why}
        return {"status": "ready"}

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        return metrics_response(request)

    return app
