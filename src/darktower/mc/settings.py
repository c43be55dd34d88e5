"""MC configuration from `MC_*` environment variables (docs/reference.md), as one typed object.

Secret values (`redis_url`, `binding_token_secret`) are `SecretStr`: their repr and str are
`**********`; code that needs the value calls `.get_secret_value()` at the point of use.
"""

from __future__ import annotations

import socket
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
from darktower.runtime.logs import LogFormat
from darktower.runtime.serving import parse_bind
from darktower.runtime.settings_doc import Contradiction, refuse, shared_ports, split_paths

__all__ = ["McSettings", "contradictions"]


class McSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MC_", extra="ignore")

    id: str = Field(
        default_factory=lambda: default_id("mc"),
        pattern=ID_FIELD_PATTERN,
        description="this MC's id: letters, digits, -, _",
    )
    region: str = Field(default="local", min_length=1, max_length=50, description="its region")
    grpc_bind: str = Field(default="0.0.0.0:50052", description="gRPC listen address (for GCs)")
    # What the GC is told to dial; empty = derived from the bind address (never 0.0.0.0).
    grpc_advertise: str = Field(
        default="", description="URL the GC dials; empty: from the bind address"
    )
    # Client signaling (WebSocket, `/v1/signaling`): served when enabled, which needs
    # MC_BINDING_TOKEN_SECRET (the same on every MC of a fleet, so sessions survive a failover).
    client_enabled: bool = Field(default=True, description="serve client signaling")
    client_bind: str = Field(
        default="0.0.0.0:8090", description="client WebSocket listen address (/v1/signaling)"
    )
    # The client endpoint registered with the GC (as its webtransport endpoint); empty =
    # derived from MC_CLIENT_BIND like the gRPC one (never 0.0.0.0). Clients open
    # ws(s)://<its host:port>/v1/signaling.
    client_advertise: str = Field(
        default="", description="client URL registered with the GC; empty: from the bind"
    )
    disconnect_grace_seconds: float = Field(
        default=30.0, gt=0, description="how long a dropped participant stays in the roster"
    )
    binding_token_ttl_seconds: int = Field(
        default=30, gt=0, description="how long a session binding token is valid"
    )
    # Limits that keep the MC up under abuse (README "Limits").
    empty_timeout_seconds: float = Field(
        default=300.0, gt=0, description="a meeting with nobody connected this long ends"
    )
    max_participants_per_meeting: int = Field(
        default=1000, ge=1, description="participants of one meeting (join beyond: meeting_full)"
    )
    max_connections: int = Field(
        default=12000, ge=1, description="open client WebSockets (more: closed with 1013)"
    )
    client_message_rate: float = Field(
        default=20.0, gt=0, description="client frames per second per connection (token bucket)"
    )
    client_message_burst: int = Field(
        default=40, ge=1, description="client frames a connection may send at once"
    )
    client_send_queue: int = Field(
        default=256, ge=1, description="frames queued for a client before it is disconnected"
    )
    state_coalesce_seconds: float = Field(
        default=0.05, ge=0, description="window in which a participant's self_mute flips merge"
    )
    roster_batch_seconds: float = Field(
        default=0.05,
        ge=0,
        le=5,
        description="window in which roster changes merge into one roster_delta frame",
    )
    health_bind: str = Field(
        default="0.0.0.0:8081", description="health HTTP listen address (/health, /metrics)"
    )
    redis_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"),
        description="Redis (redis://, rediss://, redis+sentinel://, redis+cluster://)",
    )
    gc_endpoint: str = Field(
        default="http://localhost:50051", description="the GC to register with; empty: none"
    )
    max_meetings: int = Field(default=1000, ge=0, description="admission limit: meetings")
    max_participants: int = Field(default=10000, ge=0, description="admission limit: participants")
    participant_estimate: int = Field(
        default=10, ge=0, description="participants counted for a meeting being admitted"
    )
    service_key_file: Path | None = Field(
        default=None, description="private key signing calls to the GC (needed with a GC)"
    )
    trusted_gc_key_files: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="required: comma-separated public keys (files or directories) of the GCs",
    )
    # Dev and legacy fleets only: with a shared (unbound) gc.key any holder can act as any GC.
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
    binding_token_secret: SecretStr | None = Field(
        default=None,
        description="required with clients enabled: >= 16 characters, the same fleet-wide",
    )
    drain_seconds: float = Field(
        default=30.0, ge=0, description="deadline of a graceful stop (SIGTERM/SIGINT)"
    )
    # How often each hosted meeting proves it still owns its Redis state (a fenced write);
    # a meeting that was taken over is noticed within this interval.
    meeting_touch_seconds: float = Field(
        default=5.0, gt=0, description="how often each meeting proves ownership in Redis"
    )
    redis_check_seconds: float = Field(
        default=1.0, gt=0, description="Redis reachability check (readiness)"
    )
    redis_replica_wait: int = Field(
        default=0, ge=0, description="replicas to WAIT for after an ownership change"
    )
    # Append every applied fenced write's (generation, owner) to a per-meeting Redis stream —
    # for fault-injection audits; off in production (the streams are never trimmed).
    redis_audit: bool = Field(
        default=False, description="audit stream of fenced writes (fault-injection tests)"
    )
    # Webhooks (docs/webhooks.md): meeting events recorded in Redis streams for the GCs to
    # deliver; trimmed by age, delivered or not (retries last at least 24 h).
    events_enabled: bool = Field(
        default=True, description="record meeting events for webhooks (Redis streams)"
    )
    events_retention_hours: float = Field(
        default=48.0, ge=25, description="recorded events are kept this long, delivered or not"
    )
    # Registration retry schedule (docs/reference.md: 1 s base, doubling, 30 s cap, jitter, no
    # limit).
    registration_backoff_base: float = Field(
        default=1.0, gt=0, description="first registration retry wait (seconds)"
    )
    registration_backoff_cap: float = Field(
        default=30.0, gt=0, description="longest registration retry wait (seconds)"
    )
    # TLS (gRPC, and the client WebSocket as WSS): with a certificate and key the MC serves TLS
    # and advertises https:// endpoints; the CA verifies the GC it calls and, when client
    # certificates are required, the GCs calling it (mTLS).
    tls_cert_file: Path | None = Field(
        default=None, description="TLS certificate (PEM) for gRPC and the client WebSocket"
    )
    tls_key_file: Path | None = Field(default=None, description="its private key (PEM, secret)")
    tls_ca_file: Path | None = Field(
        default=None, description="CA trusted for https:// peers (and client certificates)"
    )
    tls_require_client_cert: bool = Field(
        default=False, description="gRPC callers must present a certificate from the CA (mTLS)"
    )
    # Off: the client WebSocket stays plain WS while gRPC uses TLS (`darktower dev` does that
    # for browsers that do not trust its private CA).
    client_tls: bool = Field(
        default=True, description="serve the client WebSocket as WSS when a certificate is set"
    )
    # gRPC server reflection (grpcurl list/describe): off in production, on in `darktower dev`;
    # behind the service token like every method but the health check.
    grpc_reflection: bool = Field(
        default=False, description="serve gRPC server reflection (a service token still needed)"
    )
    # GC keys published by the GC (README "Key rotation"): with or instead of the key files.
    trusted_gc_jwks_url: str = Field(
        default="", description="the GC's JWKS (https://gc/.well-known/jwks.json); empty: none"
    )
    trusted_gc_jwks_refresh_seconds: float = Field(
        default=300.0, gt=0, description="how often the JWKS is fetched again"
    )
    trusted_gc_jwks_min_refresh_seconds: float = Field(
        default=10.0, ge=0, description="shortest time between fetches for unknown key ids"
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

    _paths = field_validator("trusted_gc_key_files", mode="before")(split_paths)

    @field_validator("grpc_bind", "health_bind", "client_bind")
    @classmethod
    def _valid_bind(cls, value: str) -> str:
        parse_bind(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> McSettings:
        refuse(contradictions(self))
        return self

    def advertised_grpc_endpoint(self, bound_port: int) -> str:
        """The URL the GC should dial: MC_GRPC_ADVERTISE, or the bind address with a wildcard
        host replaced by this machine's name (a GC cannot dial 0.0.0.0)."""
        return _advertised(self.grpc_advertise, self.grpc_bind, bound_port, self._scheme)

    def advertised_client_endpoint(self, bound_port: int) -> str:
        """The client URL registered with the GC: MC_CLIENT_ADVERTISE, or derived from
        MC_CLIENT_BIND the same way as the gRPC one; "" while client signaling is off."""
        if not self.client_enabled:
            return self.client_advertise
        scheme = self._scheme if self.client_tls else "http"
        return _advertised(self.client_advertise, self.client_bind, bound_port, scheme)

    @property
    def _scheme(self) -> str:
        """An MC with a certificate serves TLS, so what it advertises is https://."""
        return "https" if self.tls_cert_file is not None else "http"

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


def _advertised(explicit: str, bind: str, bound_port: int, scheme: str) -> str:
    if explicit:
        return explicit if "://" in explicit else f"{scheme}://{explicit}"
    host, _ = parse_bind(bind)
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{bound_port}"


def contradictions(s: McSettings) -> list[Contradiction]:
    """The MC settings that cannot hold together (pure; checked when the settings load):

    * the registration backoff base is longer than its cap (every wait would be the cap);
    * a disconnect grace longer than a binding token can be valid (TTL + clock skew): a
      dropped participant's last token expires before its grace ends, so it is kept in the
      roster for a reconnection that must fail;
    * two listeners on one port (the second could not listen).
    """
    # Imported here: `darktower --help` loads this module, the binding module loads Redis.
    from darktower.mc.binding import BINDING_CLOCK_SKEW_SECONDS

    found = []
    if s.registration_backoff_base > s.registration_backoff_cap:
        found.append(
            Contradiction(
                f"MC_REGISTRATION_BACKOFF_BASE={s.registration_backoff_base:g}",
                f"MC_REGISTRATION_BACKOFF_CAP={s.registration_backoff_cap:g}",
                "the first retry wait would be longer than the longest",
            )
        )
    token_life = s.binding_token_ttl_seconds + BINDING_CLOCK_SKEW_SECONDS
    if s.client_enabled and s.disconnect_grace_seconds > token_life:
        found.append(
            Contradiction(
                f"MC_DISCONNECT_GRACE_SECONDS={s.disconnect_grace_seconds:g}",
                f"MC_BINDING_TOKEN_TTL_SECONDS={s.binding_token_ttl_seconds}",
                f"a binding token expires after {token_life} s (TTL + clock skew), before the "
                "grace ends, so the end of the grace cannot be used to reconnect",
            )
        )
    binds = {"MC_GRPC_BIND": s.grpc_bind, "MC_HEALTH_BIND": s.health_bind}
    if s.client_enabled:
        binds["MC_CLIENT_BIND"] = s.client_bind
    found.extend(shared_ports(binds))
    return found
