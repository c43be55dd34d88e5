"""What a join answers: the hosting MC, the media handlers, and what the client needs to
enter the meeting — a fresh join token (Ed25519 JWT signed by this GC,
`darktower.auth.join_tokens`) and the MC's signaling URL."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from darktower.auth.client import SigningKey
from darktower.auth.join_tokens import JOIN_TOKEN_TTL_SECONDS, mint_join_token
from darktower.gc.ice import IceServer
from darktower.gc.join.joiner import Joiner

__all__ = ["SIGNALING_PATH", "JoinResult", "JoinTokenIssuer", "MhInfo", "signaling_url"]

SIGNALING_PATH = "/v1/signaling"


def signaling_url(client_endpoint: str | None) -> str | None:
    """The WebSocket URL of an MC's client signaling, from the client endpoint it registered:
    `http://h:p[/base]` → `ws://h:p[/base]/v1/signaling`, `https` → `wss`. None when the MC
    registered none (or something that is not an http(s) URL with a host)."""
    if not client_endpoint:
        return None
    parts = urlsplit(client_endpoint)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        return None
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + SIGNALING_PATH, "", ""))


@dataclass(frozen=True, slots=True)
class JoinTokenIssuer:
    """Mints the meeting join tokens of this GC (`issuer` = the GC's id), with the current
    key of a `SigningKey` (replaced on SIGHUP)."""

    private_key: Ed25519PrivateKey | SigningKey = field(repr=False)
    issuer: str
    ttl_seconds: int = JOIN_TOKEN_TTL_SECONDS

    def mint(self, meeting_id: str, joiner: Joiner) -> str:
        key = self.private_key
        return mint_join_token(
            key.current if isinstance(key, SigningKey) else key,
            meeting_id=meeting_id,
            user_id=joiner.user_id,
            display_name=joiner.display_name,
            issuer=self.issuer,
            role=joiner.role,
            ttl_seconds=self.ttl_seconds,
        )


@dataclass(frozen=True, slots=True)
class MhInfo:
    mh_id: str
    webtransport_endpoint: str
    role: str  # "primary" | "backup"


@dataclass(frozen=True, slots=True)
class JoinResult:
    meeting_id: str
    region: str
    mc_id: str
    mc_grpc_endpoint: str
    mc_client_endpoint: str | None
    media_handlers: tuple[MhInfo, ...]
    reused: bool
    user_id: str
    display_name: str
    join_token: str
    signaling_url: str | None
    # STUN/TURN servers for the browser (`GC_ICE_SERVERS`), TURN ones with credentials
    # minted for this joiner; empty when none are configured.
    ice_servers: tuple[IceServer, ...] = ()
