"""GC configuration from `GC_*` environment variables (docs/reference.md), as one typed object.

`database_url` is a `SecretStr`: its repr is `**********`; it is read with
`.get_secret_value()` only where the engine is created.
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
from darktower.gc.ice import is_turn, split_ice_urls
from darktower.runtime.event_loop import EventLoop
from darktower.runtime.logs import LogFormat
from darktower.runtime.serving import parse_bind
from darktower.runtime.settings_doc import Contradiction, refuse, shared_ports, split_paths
from darktower.webhooks.urls import split_webhook_urls

__all__ = ["DEFAULT_DATABASE_URL", "GcSettings", "contradictions"]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///darktower-gc.db"


class GcSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GC_", extra="ignore")

    id: str = Field(
        default_factory=lambda: default_id("gc"),
        pattern=ID_FIELD_PATTERN,
        description="this GC's id: letters, digits, -, _",
    )
    region: str = Field(
        default="local", min_length=1, max_length=50, description="the region it places in"
    )
    grpc_bind: str = Field(default="0.0.0.0:50051", description="gRPC listen address (MCs, MHs)")
    http_bind: str = Field(
        default="0.0.0.0:8080", description="HTTP listen address (join API, dashboard, health)"
    )
    # README "Access model": probes and Prometheus need no token, so an operator may keep
    # them off the public address.
    health_bind: str = Field(
        default="",
        description="serve /health/* and /metrics only on this address (an internal one), "
        "not on GC_HTTP_BIND; empty: on GC_HTTP_BIND",
    )
    database_url: SecretStr = Field(
        default=SecretStr(DEFAULT_DATABASE_URL),
        description="PostgreSQL (postgresql+asyncpg://) or SQLite (sqlite+aiosqlite:///)",
    )
    service_key_file: Path | None = Field(
        default=None, description="required: private key signing calls to MCs and join tokens"
    )
    # Files or directories (every *.pub in one). A key bound to an instance (`darktower keys
    # generate --service mc --id mc-1`) lets its holder act only as that instance.
    trusted_mc_key_files: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="required: comma-separated public keys (files or directories) of the MCs",
    )
    trusted_mh_key_files: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="comma-separated public keys (files or directories) of the MHs allowed in",
    )
    # Dev and legacy fleets only: with a shared (unbound) key any holder can act as any MC/MH.
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
    staleness_seconds: float = Field(
        default=30.0, gt=0, description="an MC or MH silent this long is marked unhealthy"
    )
    sweep_interval_seconds: float = Field(
        default=5.0, gt=0, description="how often silent MCs and MHs are looked for"
    )
    fast_heartbeat_ms: int = Field(
        default=10_000, gt=0, description="fast heartbeat interval handed to MCs"
    )
    comprehensive_heartbeat_ms: int = Field(
        default=30_000, gt=0, description="comprehensive heartbeat interval handed to MCs"
    )
    mh_load_report_ms: int = Field(
        default=10_000, gt=0, description="load report interval handed to MHs"
    )
    # Heartbeats are written behind: the latest per MC, all in one transaction every this
    # many ms, or as soon as this many MCs have one pending. 0 ms writes each beat at once.
    heartbeat_flush_ms: int = Field(
        default=150, ge=0, description="heartbeats written behind every this many ms; 0: at once"
    )
    heartbeat_flush_max_pending: int = Field(
        default=500, ge=1, description="... or as soon as this many MCs have one pending"
    )
    mc_call_timeout_seconds: float = Field(
        default=10.0, gt=0, description="timeout of one call to an MC"
    )
    placement_attempts: int = Field(default=3, ge=1, description="MCs tried per placement")
    # A claim whose GC never finished the placement (it died) is taken over after this.
    claim_stale_seconds: float = Field(
        default=30.0, gt=0, description="a placement claim left by a dead GC is taken over"
    )
    assignment_retention_hours: float = Field(
        default=24.0, gt=0, description="ended assignments are purged after this"
    )
    # Lifetime of the meeting join tokens handed out with join answers: long enough to open
    # the signaling connection, short enough that a leaked one is soon worthless.
    join_token_ttl_seconds: int = Field(
        default=120, ge=10, le=3600, description="lifetime of the join tokens in join answers"
    )
    # Limits of the HTTP API (darktower.gc.limits). The join defaults let a class of 60
    # behind one NAT address join at once, and a busy application's users through one key.
    max_body_bytes: int = Field(
        default=65_536, ge=1024, description="larger request bodies are refused (413)"
    )
    join_rate_per_ip: float = Field(
        default=2.0, gt=0, description="joins per second one client IP regains (429 beyond)"
    )
    join_burst_per_ip: int = Field(
        default=60, ge=1, description="joins one client IP may make at once"
    )
    join_rate_per_api_key: float = Field(
        default=50.0, gt=0, description="joins per second one API key regains (429 beyond)"
    )
    join_burst_per_api_key: int = Field(
        default=1000, ge=1, description="joins one API key's users may make at once"
    )
    rate_limit_max_keys: int = Field(
        default=10_000, ge=1, description="rate-limit buckets kept per limit (LRU)"
    )
    # TLS (gRPC, and the HTTP API as HTTPS): with a certificate and key the GC serves TLS;
    # the CA verifies the MCs it calls (https:// endpoints) and, when client certificates are
    # required, the MCs and MHs calling it (mTLS).
    tls_cert_file: Path | None = Field(
        default=None, description="TLS certificate (PEM) for gRPC and the HTTP API"
    )
    tls_key_file: Path | None = Field(default=None, description="its private key (PEM, secret)")
    tls_ca_file: Path | None = Field(
        default=None, description="CA trusted for https:// MCs (and client certificates)"
    )
    tls_require_client_cert: bool = Field(
        default=False, description="gRPC callers must present a certificate from the CA (mTLS)"
    )
    # Off: the HTTP API stays plain HTTP while gRPC uses TLS (`darktower dev` does that for
    # browsers that do not trust its private CA).
    http_tls: bool = Field(
        default=True, description="serve the HTTP API as HTTPS when a certificate is set"
    )
    # Access (README "Access model"): the API keys whose access tokens the GC accepts, reloaded
    # on SIGHUP; guests (joins without a token, operator reads without admin) for dev fleets.
    api_key_files: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="comma-separated API key files (darktower api-key create) trusted for "
        "access tokens; reloaded on SIGHUP",
    )
    allow_guests: bool = Field(
        default=False,
        description="joins without an access token (as guests) and open operator reads: dev only",
    )
    # gRPC server reflection (grpcurl list/describe): off in production, on in `darktower dev`;
    # behind the service token like every method but the health check.
    grpc_reflection: bool = Field(
        default=False, description="serve gRPC server reflection (a service token still needed)"
    )
    # After SIGHUP puts a new key in GC_SERVICE_KEY_FILE, the old one stays in the JWKS this
    # long: tokens it signed (600 s at most, plus 5 s leeway) stay verifiable (README "Key
    # rotation").
    retired_key_publish_seconds: float = Field(
        default=605.0, ge=0, description="how long a replaced signing key stays in the JWKS"
    )
    # Webhooks (docs/webhooks.md): the URLs events are POSTed to, signed with an API key; the
    # Redis the MCs record events in. Off while the list is empty.
    webhook_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated http(s) URLs that receive the meeting events (webhooks)",
    )
    webhook_key_file: Path | None = Field(
        default=None, description="API key file whose secret signs webhooks (api-key create)"
    )
    events_redis_url: SecretStr | None = Field(
        default=None, description="the Redis the MCs record events in (their MC_REDIS_URL)"
    )
    webhook_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="timeout of one webhook request"
    )
    webhook_retry_cap_seconds: float = Field(
        default=600.0, ge=1, description="longest wait between two tries of one webhook"
    )
    webhook_lease_seconds: float = Field(
        default=10.0, ge=1, description="an event partition is taken from a silent GC after this"
    )
    # ICE for the browsers (README "ICE in a real deployment", darktower.gc.ice): join answers
    # carry these, TURN ones with credentials minted per join from the coturn secret.
    ice_servers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated stun:/turn:/turns: URLs handed to browsers in join answers",
    )
    turn_secret: SecretStr | None = Field(
        default=None, description="coturn's static-auth-secret: mints the TURN credentials"
    )
    turn_credential_ttl_seconds: int = Field(
        default=3600, ge=60, le=86_400, description="lifetime of a minted TURN credential"
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: LogFormat = Field(
        default=LogFormat.TEXT,
        description="text, or json: one JSON object per line (with trace ids in a span)",
    )
    event_loop: EventLoop = Field(
        default=EventLoop.UVLOOP,
        description="uvloop (a core dependency on Linux; asyncio's where not installed) or asyncio",
    )

    _paths = field_validator(
        "trusted_mc_key_files", "trusted_mh_key_files", "api_key_files", mode="before"
    )(split_paths)
    _webhook_urls = field_validator("webhook_urls", mode="before")(split_webhook_urls)
    _ice_servers = field_validator("ice_servers", mode="before")(split_ice_urls)

    @field_validator("grpc_bind", "http_bind")
    @classmethod
    def _valid_bind(cls, value: str) -> str:
        parse_bind(value)
        return value

    @field_validator("health_bind")
    @classmethod
    def _valid_optional_bind(cls, value: str) -> str:
        if value:
            parse_bind(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> GcSettings:
        refuse(contradictions(self))
        return self

    def secret_values(self) -> list[str]:
        """The database URL and its password, for the log redaction filter."""
        from urllib.parse import urlsplit

        url = self.database_url.get_secret_value()
        password = urlsplit(url).password
        values = [v for v in (url, password) if v]
        if self.events_redis_url is not None:
            events_url = self.events_redis_url.get_secret_value()
            values += [v for v in (events_url, urlsplit(events_url).password) if v]
        if self.turn_secret is not None and self.turn_secret.get_secret_value():
            values.append(self.turn_secret.get_secret_value())
        return values


def contradictions(s: GcSettings) -> list[Contradiction]:
    """The GC settings that cannot hold together (pure; checked when the settings load):

    * staleness not longer than an interval the GC hands out that refreshes what staleness
      measures: an MC's last heartbeat is refreshed by its fast and its comprehensive beats,
      so by the shorter of the two; an MH's by its load reports. Otherwise every MC or MH is
      stale between two beats and joins answer 503;
    * a sweep interval not shorter than staleness (silence goes unnoticed for longer than the
      threshold says);
    * a placement claim taken over as stale before one call to an MC can time out (a live
      GC's placement would be taken over while it waits for the MC's answer);
    * TURN URLs in GC_ICE_SERVERS without GC_TURN_SECRET (no credential could be minted);
    * both listeners on one port.
    """
    found = []
    staleness = f"GC_STALENESS_SECONDS={s.staleness_seconds:g}"
    staleness_ms = s.staleness_seconds * 1000
    mc_refresh_name, mc_refresh_ms = min(
        ("GC_FAST_HEARTBEAT_MS", s.fast_heartbeat_ms),
        ("GC_COMPREHENSIVE_HEARTBEAT_MS", s.comprehensive_heartbeat_ms),
        key=lambda pair: pair[1],
    )
    if staleness_ms <= mc_refresh_ms:
        found.append(
            Contradiction(
                staleness,
                f"{mc_refresh_name}={mc_refresh_ms}",
                "every MC would be stale between two heartbeats (staleness must be longer)",
            )
        )
    if staleness_ms <= s.mh_load_report_ms:
        found.append(
            Contradiction(
                staleness,
                f"GC_MH_LOAD_REPORT_MS={s.mh_load_report_ms}",
                "every MH would be stale between two load reports, so joins would answer 503 "
                "no_media_handler (staleness must be longer)",
            )
        )
    if s.sweep_interval_seconds >= s.staleness_seconds:
        found.append(
            Contradiction(
                f"GC_SWEEP_INTERVAL_SECONDS={s.sweep_interval_seconds:g}",
                staleness,
                "silent MCs and MHs would be swept later than the threshold says "
                "(the sweep interval must be shorter)",
            )
        )
    if s.claim_stale_seconds <= s.mc_call_timeout_seconds:
        found.append(
            Contradiction(
                f"GC_CLAIM_STALE_SECONDS={s.claim_stale_seconds:g}",
                f"GC_MC_CALL_TIMEOUT_SECONDS={s.mc_call_timeout_seconds:g}",
                "a placement would be taken over while its GC still waits for the MC",
            )
        )
    turn_urls = [u for u in s.ice_servers if is_turn(u)]
    if turn_urls and (s.turn_secret is None or not s.turn_secret.get_secret_value()):
        found.append(
            Contradiction(
                f"GC_ICE_SERVERS ({len(turn_urls)} TURN URL(s))",
                "GC_TURN_SECRET (unset)",
                "TURN credentials cannot be minted without coturn's static-auth-secret",
            )
        )
    binds = {"GC_GRPC_BIND": s.grpc_bind, "GC_HTTP_BIND": s.http_bind}
    if s.health_bind:
        binds["GC_HEALTH_BIND"] = s.health_bind
    found.extend(shared_ports(binds))
    return found
