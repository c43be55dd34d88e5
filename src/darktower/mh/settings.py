"""MH configuration from `MH_*` environment variables (README "Media"), as one typed object.

Two ways to run Janus:

* **started** (default when `janus` is on PATH and `MH_JANUS_ADMIN_URL` is empty): the MH writes
  a private configuration (`darktower.mh.janus_config`) with fresh secrets and starts `janus`;
* **attached** (`MH_JANUS_ADMIN_URL` set): the MH uses a running Janus; `MH_JANUS_URL` is the
  client URL it hands out (`http(s)://host:port`; clients open `ws(s)://` there),
  `MH_JANUS_ADMIN_SECRET` and `MH_JANUS_ROOM_ADMIN_KEY` are that Janus's admin secret and
  VideoRoom admin key. That Janus must have `token_auth` on.

Secret values are `SecretStr`: their repr and str are `**********`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from darktower.auth.tokens import (
    DEFAULT_MAX_LIFETIME_SECONDS,
    MAX_LIFETIME_CEILING_SECONDS,
    MAX_LIFETIME_FLOOR_SECONDS,
)
from darktower.common.ids import ID_FIELD_PATTERN, default_id
from darktower.runtime.event_loop import EventLoop
from darktower.runtime.serving import parse_bind
from darktower.runtime.settings_doc import split_paths

__all__ = ["MhSettings"]


class MhSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MH_", extra="ignore")

    id: str = Field(
        default_factory=lambda: default_id("mh"),
        pattern=ID_FIELD_PATTERN,
        description="this MH's id: letters, digits, -, _",
    )
    region: str = Field(default="local", min_length=1, max_length=50, description="its region")
    zone: str = Field(default="zone-a", min_length=1, max_length=50, description="failure zone")
    gc_endpoint: str = Field(
        default="http://127.0.0.1:50051", description="the GC's gRPC endpoint (registration)"
    )
    max_streams: int = Field(default=1000, ge=1, description="capacity registered with the GC")
    token_claim_seconds: float = Field(
        default=120.0,
        ge=1,
        le=86_400,
        description="a media token no Janus handle uses this long after Register is revoked",
    )
    max_bitrate_mbps: float = Field(
        default=1000.0,
        gt=0,
        le=1_000_000,
        description="media bandwidth (Mbit/s) the reports' bandwidth share is of",
    )
    grpc_bind: str = Field(default="0.0.0.0:50053", description="gRPC listen address (for MCs)")
    grpc_advertise: str = Field(
        default="", description="URL MCs dial; empty: from the bind address"
    )
    health_bind: str = Field(
        default="0.0.0.0:8083", description="health HTTP listen address (/health, /metrics)"
    )
    service_key_file: Path | None = Field(
        default=None, description="required: private key signing calls to the GC"
    )
    trusted_mc_key_files: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="required: comma-separated public keys (files or directories) of the MCs",
    )
    allow_unbound_keys: bool = Field(
        default=False, description="accept tokens of unbound (shared) keys: dev/legacy only"
    )
    # The longest life (exp - iat) of a service token accepted here (README "Service
    # authentication"): a stolen token is worth at most this long.
    service_token_max_lifetime_seconds: int = Field(
        default=DEFAULT_MAX_LIFETIME_SECONDS,
        ge=MAX_LIFETIME_FLOOR_SECONDS,
        le=MAX_LIFETIME_CEILING_SECONDS,
        description="longest life (exp - iat) of a service token accepted, 300 to 3600 s",
    )
    # Janus.
    janus_binary: str = Field(default="", description="janus to start; empty: `janus` on PATH")
    janus_dir: Path | None = Field(
        default=None, description="private directory of a started Janus; empty: a new temp dir"
    )
    janus_ws_bind: str = Field(
        default="0.0.0.0:8188", description="client WebSocket listen address of a started Janus"
    )
    # Like an MC's client endpoint, an http(s):// URL: clients open ws(s):// on it.
    janus_url: str = Field(
        default="", description="client URL (http(s)://host:port) handed out; empty: from bind"
    )
    janus_admin_url: str = Field(
        default="", description="admin API URL of a running Janus (attach); empty: start one"
    )
    janus_admin_secret: SecretStr | None = Field(
        default=None, description="admin secret of an attached Janus"
    )
    janus_room_admin_key: SecretStr | None = Field(
        default=None, description="VideoRoom admin_key of an attached Janus"
    )
    janus_rtp_port_range: str = Field(
        default="20000-40000", pattern=r"^\d{1,5}-\d{1,5}$", description="media UDP ports"
    )
    janus_ice_enforce_list: str = Field(
        default="", description="interfaces/addresses ICE may use (Janus ice_enforce_list)"
    )
    janus_nat_1_1_mapping: str = Field(
        default="", description="public address to advertise in candidates (behind 1:1 NAT)"
    )
    janus_stun_server: str = Field(
        default="",
        pattern=r"^$|^[A-Za-z0-9][A-Za-z0-9.-]{0,252}:\d{1,5}$",
        description="STUN host:port Janus learns its public address from (NAT without 1:1)",
    )
    report_seconds_floor: float = Field(
        default=1.0, gt=0, description="shortest load report interval, whatever the GC asks"
    )
    tls_cert_file: Path | None = Field(default=None, description="gRPC TLS certificate (PEM)")
    tls_key_file: Path | None = Field(default=None, description="its private key (PEM, secret)")
    tls_ca_file: Path | None = Field(
        default=None, description="CA verifying the GC's certificate (and MCs' with mTLS)"
    )
    tls_require_client_cert: bool = Field(default=False, description="require MC certificates")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: str = Field(
        default="text", pattern="^(text|json)$", description="text, or json: a JSON object per line"
    )
    event_loop: EventLoop = Field(
        default=EventLoop.UVLOOP,
        description="uvloop (a core dependency on Linux; asyncio's where not installed) or asyncio",
    )

    _split = field_validator("trusted_mc_key_files", mode="before")(split_paths)

    @field_validator("grpc_bind", "health_bind", "janus_ws_bind")
    @classmethod
    def _valid_bind(cls, value: str) -> str:
        parse_bind(value)
        return value

    @model_validator(mode="after")
    def _attach_complete(self) -> MhSettings:
        if self.janus_admin_url and not (
            self.janus_url and self.janus_admin_secret and self.janus_room_admin_key
        ):
            raise ValueError(
                "MH_JANUS_ADMIN_URL (attach) needs MH_JANUS_URL, MH_JANUS_ADMIN_SECRET and "
                "MH_JANUS_ROOM_ADMIN_KEY"
            )
        return self

    @property
    def attached(self) -> bool:
        return bool(self.janus_admin_url)

    def secret_values(self) -> list[str]:
        """Every secret string, for the log redaction filter."""
        return [
            s.get_secret_value()
            for s in (self.janus_admin_secret, self.janus_room_admin_key)
            if s is not None and s.get_secret_value()
        ]
