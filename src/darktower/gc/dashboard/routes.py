"""Serving the dashboard: the page at `/`, its assets under `/static/`.

Both come from the package's `static/` directory through `importlib.resources`, so they work
from a wheel as well as from a source checkout. The page is sent with a Content-Security-Policy
that allows only its own origin: should an API string ever reach the DOM as markup, no script
or outside request could follow from it (the script itself only ever writes `textContent`).
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

__all__ = ["CONTENT_SECURITY_POLICY", "STATIC_PATH", "mount_dashboard"]

STATIC_PATH = "/static"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

_PACKAGE = __package__ or "darktower.gc.dashboard"


def _page() -> str:
    return resources.files(_PACKAGE).joinpath("static", "index.html").read_text("utf-8")


def mount_dashboard(app: FastAPI) -> None:
    """Serve the dashboard on `app`: `GET /` (the page) and `GET /static/...` (its assets)."""
    page = _page()

    @app.get("/", include_in_schema=False)
    async def dashboard() -> HTMLResponse:
        return HTMLResponse(
            page,
            headers={
                "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
            },
        )

    app.mount(
        STATIC_PATH,
        StaticFiles(packages=[(_PACKAGE, "static")]),
        name="dashboard-static",
    )
