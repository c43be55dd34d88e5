"""`darktower mh`: run one media handler in front of Janus from `MH_*` settings."""

from __future__ import annotations

from darktower.runtime.service_cli import run_service
from darktower.runtime.settings_doc import documented_by

__all__ = ["mh"]


@documented_by("darktower.mh.settings", "MhSettings")
def mh() -> None:
    """Run a media handler (Janus VideoRoom) configured from MH_* environment variables."""
    from darktower.mh.server import serve
    from darktower.mh.settings import MhSettings

    run_service("mh", "MH_", MhSettings, serve)
