"""GC configuration from `GC_*` environment variables (SPEC §8), as one typed object.

`database_url` is a `SecretStr`: its repr is `**********`; it is read with
`.get_secret_value()` only where the engine is created.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from darktower.serving import parse_bind

__all__ = ["DEFAULT_DATABASE_URL", "GcSettings"]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///darktower-gc.db"
_HOST_SAFE = re.compile(r"[^A-Za-z0-9_-]")


def _default_id() -> str:
    return "gc-" + _HOST_SAFE.sub("-", socket.gethostname())[:200]


def _split_paths(value: object) -> object:
    if isinstance(value, str):
        return [Path(p.strip()) for p in value.split(",") if p.strip()]
    return value


class GcSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GC_", extra="ignore")

    id: str = Field(default_factory=_default_id, pattern=r"^[A-Za-z0-9_-]{1,255}$")
    region: str = Field(default="local", min_length=1, max_length=50)
    grpc_bind: str = "0.0.0.0:50051"
    http_bind: str = "0.0.0.0:8080"
    database_url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    service_key_file: Path | None = None
    trusted_mc_key_files: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    trusted_mh_key_files: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    staleness_seconds: float = Field(default=30.0, gt=0)
    sweep_interval_seconds: float = Field(default=5.0, gt=0)
    fast_heartbeat_ms: int = Field(default=10_000, gt=0)
    comprehensive_heartbeat_ms: int = Field(default=30_000, gt=0)
    mh_load_report_ms: int = Field(default=10_000, gt=0)
    # Heartbeats are written behind: the latest per MC, all in one transaction every this
    # many ms, or as soon as this many MCs have one pending. 0 ms writes each beat at once.
    heartbeat_flush_ms: int = Field(default=150, ge=0)
    heartbeat_flush_max_pending: int = Field(default=500, ge=1)
    mc_call_timeout_seconds: float = Field(default=10.0, gt=0)
    placement_attempts: int = Field(default=3, ge=1)
    # A claim whose GC never finished the placement (it died) is taken over after this.
    claim_stale_seconds: float = Field(default=30.0, gt=0)
    assignment_retention_hours: float = Field(default=24.0, gt=0)
    # Lifetime of the meeting join tokens handed out with join answers: long enough to open
    # the signaling connection, short enough that a leaked one is soon worthless.
    join_token_ttl_seconds: int = Field(default=120, ge=10, le=3600)
    log_level: str = "INFO"

    _paths = field_validator("trusted_mc_key_files", "trusted_mh_key_files", mode="before")(
        _split_paths
    )

    @field_validator("grpc_bind", "http_bind")
    @classmethod
    def _valid_bind(cls, value: str) -> str:
        parse_bind(value)
        return value

    def secret_values(self) -> list[str]:
        """The database URL and its password, for the log redaction filter."""
        from urllib.parse import urlsplit

        url = self.database_url.get_secret_value()
        password = urlsplit(url).password
        return [v for v in (url, password) if v]
