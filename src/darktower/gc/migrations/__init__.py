"""Schema migrations of the GC store (Alembic), run programmatically: no alembic.ini.

`darktower.gc.store.migrate(url_or_engine)` upgrades a database to `HEAD`; this package holds
the Alembic environment (`env.py`) and the revisions (`versions/`). To write a new revision,
pass `alembic_config()` to `alembic.command.revision` and set its `down_revision` to the
current head; revisions spell out their DDL instead of importing the models.
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

__all__ = ["HEAD", "VERSION_TABLE", "alembic_config"]

HEAD = "0002"
"""The newest revision."""

VERSION_TABLE = "gc_alembic_version"


def alembic_config() -> Config:
    """An Alembic Config pointing at this package; env.py takes the connection from
    `config.attributes["connection"]`."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent).replace("%", "%%"))
    config.set_main_option("version_table", VERSION_TABLE)
    return config
