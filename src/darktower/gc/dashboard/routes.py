"""Serving the dashboard: the page at `/`, its assets under `/static/`.

Both come from the package's `static/` directory through `importlib.resources`, so they work
from a wheel as well as from a source checkout. The page is sent with a Content-Security-Policy
that allows only its own origin: should an API string ever reach the DOM as markup, no script
or outside request could follow from it (the script itself only ever writes `textContent`).
"""

from __future__ import annotations

from fastapi import FastAPI

from darktower.gc.static_page import mount_static_page

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


def mount_dashboard(app: FastAPI) -> None:
    """Serve the dashboard on `app`: `GET /` (the page) and `GET /static/...` (its assets)."""
    mount_static_page(
        app,
        package=_PACKAGE,
        page="index.html",
        path="/",
        static_path=STATIC_PATH,
        csp=CONTENT_SECURITY_POLICY,
        name="dashboard",
    )
