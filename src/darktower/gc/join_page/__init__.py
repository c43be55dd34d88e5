"""The join page: a small web page the GC serves at `/join` to enter a meeting in a browser.

Plain HTML, CSS and JavaScript shipped as package files (`static/`), nothing fetched from
another origin. The page asks this GC for a join answer (`POST /v1/meetings/{id}/join`), opens
the WebSocket the answer names (the MC's client signaling, protocol v1 of
`darktower.signaling.protocol`) and shows the roster live, with Leave and a self-mute toggle.
`/join?meeting=ID&name=NAME` fills the form in.
"""

from __future__ import annotations

from darktower.gc.join_page.routes import (
    JOIN_PAGE_CSP,
    JOIN_PAGE_PATH,
    JOIN_STATIC_PATH,
    mount_join_page,
)

__all__ = ["JOIN_PAGE_CSP", "JOIN_PAGE_PATH", "JOIN_STATIC_PATH", "mount_join_page"]
