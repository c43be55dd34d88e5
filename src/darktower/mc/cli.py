"""`darktower mc`: run one Meeting Controller from `MC_*` settings."""

from __future__ import annotations

from darktower.runtime.service_cli import run_service
from darktower.runtime.settings_doc import documented_by

__all__ = ["mc"]


@documented_by("darktower.mc.settings", "McSettings")
def mc() -> None:
    """Run a Meeting Controller configured from MC_* environment variables (docs/reference.md)."""
    # Imported here: every `darktower` command loads this module, only `mc` needs the MC stack
    # (the settings class, for the help, is light).
    from darktower.mc.server import serve
    from darktower.mc.settings import McSettings

    run_service("mc", "MC_", McSettings, serve)
