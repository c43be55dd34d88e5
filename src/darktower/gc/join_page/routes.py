"""Serving the join page: the page at `/join`, its assets under `/join/static/`.

Both come from the package's `static/` directory through `importlib.resources` (a wheel works
as well as a checkout). The page's Content-Security-Policy allows scripts, styles and fetches
from its own origin only, plus WebSocket connections (`ws:`/`wss:`) — the signaling socket is
on the MC, another origin the GC names in its join answer. The script writes every string it
receives as `textContent`, never as markup.
"""

from __future__ import annotations

from fastapi import FastAPI

from darktower.gc.static_page import mount_static_page

__all__ = ["JOIN_PAGE_CSP", "JOIN_PAGE_PATH", "JOIN_STATIC_PATH", "mount_join_page"]

JOIN_PAGE_PATH = "/join"
JOIN_STATIC_PATH = "/join/static"

JOIN_PAGE_CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self' ws: wss:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

_PACKAGE = __package__ or "darktower.gc.join_page"


def mount_join_page(app: FastAPI) -> None:
    """Serve the join page on `app`: `GET /join` and `GET /join/static/...`."""
    mount_static_page(
        app,
        package=_PACKAGE,
        page="join.html",
        path=JOIN_PAGE_PATH,
        static_path=JOIN_STATIC_PATH,
        csp=JOIN_PAGE_CSP,
        name="join_page",
        extra_headers={"Referrer-Policy": "no-referrer"},
    )
