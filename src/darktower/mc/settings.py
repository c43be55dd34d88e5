"""MC configuration from `MC_*` environment variables (SPEC §8), as one typed object.

Secret values (`redis_url`, `binding_token_secret`) are `SecretStr`: their repr and str are
`**********`; code that needs the value calls `.get_secret_value()` at the point of use.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from darktower.serving import parse_bind

__all__ = ["McSettings"]

_HOST_SAFE = re.compile(r"[^A-Za-z0-9_-]")


def _default_id() -> str:
    return "mc-" + _HOST_SAFE.sub("-", socket.gethostname())[:200]


class McSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MC_", extra="ignore")

    id: str = Field(default_factory=_default_id, pattern=r"^[A-Za-z0-9_-]{1,255}$")
    region: str = Field(default="local", min_length=1, max_length=50)
    grpc_bind: str = "0.0.0.0:50052"
    # What the GC is told to dial; empty = derived from the bind address (never 0.0.0.0).
    grpc_advertise: str = ""
    # Client signaling (WebSocket, `/v1/signaling`): served when enabled, which needs
    # MC_BINDING_TOKEN_SECRET (the same on every MC of a fleet, so sessions survive a failover).
    client_enabled: bool = True
    client_bind: str = "0.0.0.0:8090"
    # The client endpoint registered with the GC (as its webtransport endpoint); empty =
    # derived from MC_CLIENT_BIND like the gRPC one (never 0.0.0.0). Clients open
    # ws(s)://<its host:port>/v1/signaling.
    client_advertise: str = ""
    disconnect_grace_seconds: float = Field(default=30.0, gt=0)
    binding_token_ttl_seconds: int = Field(default=30, gt=0)
    health_bind: str = "0.0.0.0:8081"
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    gc_endpoint: str = "http://localhost:50051"
    max_meetings: int = Field(default=1000, ge=0)
    max_participants: int = Field(default=10000, ge=0)
    participant_estimate: int = Field(default=10, ge=0)
    service_key_file: Path | None = None
    trusted_gc_key_files: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    binding_token_secret: SecretStr | None = None
    drain_seconds: float = Field(default=30.0, ge=0)
    # How often each hosted meeting proves it still owns its Redis state (a fenced write);
    # a meeting that was taken over is noticed within this interval.
    meeting_touch_seconds: float = Field(default=5.0, gt=0)
    redis_check_seconds: float = Field(default=1.0, gt=0)
    redis_replica_wait: int = Field(default=0, ge=0)
    # Append every applied fenced write's (generation, owner) to a per-meeting Redis stream —
    # for fault-injection audits; off in production (the streams are never trimmed).
    redis_audit: bool = False
    # Registration retry schedule (SPEC §7: 1 s base, doubling, 30 s cap, jitter, no limit).
    registration_backoff_base: float = Field(default=1.0, gt=0)
    registration_backoff_cap: float = Field(default=30.0, gt=0)
    log_level: str = "INFO"

    @field_validator("trusted_gc_key_files", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return [Path(p.strip()) for p in value.split(",") if p.strip()]
        return value

    @field_validator("grpc_bind", "health_bind", "client_bind")
    @classmethod
    def _valid_bind(cls, value: str) -> str:
        parse_bind(value)
        return value

    def advertised_grpc_endpoint(self, bound_port: int) -> str:
        """The URL the GC should dial: MC_GRPC_ADVERTISE, or the bind address with a wildcard
        host replaced by this machine's name (a GC cannot dial 0.0.0.0)."""
        return _advertised(self.grpc_advertise, self.grpc_bind, bound_port)

    def advertised_client_endpoint(self, bound_port: int) -> str:
        """The client URL registered with the GC: MC_CLIENT_ADVERTISE, or derived from
        MC_CLIENT_BIND the same way as the gRPC one; "" while client signaling is off."""
        if not self.client_enabled:
            return self.client_advertise
        return _advertised(self.client_advertise, self.client_bind, bound_port)

    def secret_values(self) -> list[str]:
        """Every secret string, for the log redaction filter (passwords inside URLs too)."""
        from urllib.parse import urlsplit

        values = [self.redis_url.get_secret_value()]
        password = urlsplit(values[0]).password
        if password:
            values.append(password)
        if self.binding_token_secret is not None:
            values.append(self.binding_token_secret.get_secret_value())
        return [v for v in values if v]


def _advertised(explicit: str, bind: str, bound_port: int) -> str:
    if explicit:
        return explicit if "://" in explicit else f"http://{explicit}"
    host, _ = parse_bind(bind)
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{bound_port}"
