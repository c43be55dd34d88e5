"""The operator dashboard: one static page the GC serves at `/`.

The page is plain HTML, CSS and JavaScript shipped as package files (`static/`), with no build
step and nothing fetched from another origin. It polls the GC's own read API
(`/v1/controllers`, `/v1/media-handlers`, `/v1/placements/recent`) and renders the fleet; the
server side only serves files.
"""

from __future__ import annotations

from darktower.gc.dashboard.routes import CONTENT_SECURITY_POLICY, mount_dashboard

__all__ = ["CONTENT_SECURITY_POLICY", "mount_dashboard"]
