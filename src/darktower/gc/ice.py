"""ICE servers for the browsers (`GC_ICE_SERVERS`, `GC_TURN_SECRET`): what a join answer's
`ice_servers` carries, with TURN credentials minted per join.

The STUN/TURN URLs are checked here (`split_ice_urls`): `stun:`, `turn:` or `turns:`, a host,
an optional port, and for TURN only the `?transport=udp|tcp` query (RFC 7065). A URL is never
echoed in an error, only its position.

The TURN credentials follow the TURN REST API scheme coturn verifies with `use-auth-secret` /
`static-auth-secret`: username = `<unix expiry>:<participant identity>`, credential =
base64(HMAC-SHA1(secret, username)). A leaked pair is worth nothing after its expiry, and only
as a relay: it opens no meeting.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from darktower.runtime.settings_doc import split_list

__all__ = [
    "MAX_ICE_URLS",
    "MAX_ICE_URL_CHARS",
    "IceServer",
    "IceServers",
    "is_turn",
    "split_ice_urls",
    "turn_credential",
]

MAX_ICE_URLS = 10
MAX_ICE_URL_CHARS = 512

# RFC 7064/7065: stun:host[:port], turn(s):host[:port][?transport=udp|tcp]; the host a name,
# an IPv4 address or a bracketed IPv6 one.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = r"(?:" + _LABEL + r"(?:\." + _LABEL + r")*|\[[0-9A-Fa-f:.]+\])"
_URL = re.compile(
    r"(?P<scheme>stun|turn|turns):(?P<host>" + _HOST + r")(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<query>\?transport=(?:udp|tcp))?"
)


def is_turn(url: str) -> bool:
    return url.lower().startswith(("turn:", "turns:"))


def split_ice_urls(value: object) -> list[str]:
    """A comma-separated string (or a list) of STUN/TURN URLs → the list; ValueError naming
    the first bad one by its position (1-based), never its text."""
    urls = split_list(value, most=MAX_ICE_URLS, plural="ICE server URLs")
    for position, url in enumerate(urls, 1):
        if len(url) > MAX_ICE_URL_CHARS:
            raise ValueError(f"ICE URL {position} is longer than {MAX_ICE_URL_CHARS} characters")
        match = _URL.fullmatch(url)
        if match is None:
            raise ValueError(
                f"ICE URL {position} must be stun:, turn: or turns: host[:port] "
                "(turn: may end in ?transport=udp or tcp)"
            )
        port = match.group("port")
        if port is not None and not 1 <= int(port) <= 65535:
            raise ValueError(f"ICE URL {position} has a port outside 1-65535")
        if match.group("query") and match.group("scheme").startswith("stun"):
            raise ValueError(f"ICE URL {position}: a stun: URL takes no ?transport")
    if len(set(urls)) != len(urls):
        raise ValueError("an ICE URL is listed twice")
    return urls


def turn_credential(secret: bytes, username: str) -> str:
    """coturn's `use-auth-secret` password for `username`: base64(HMAC-SHA1(secret, username))."""
    digest = hmac.new(secret, username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True, slots=True)
class IceServer:
    """One entry of an RTCPeerConnection's `iceServers`."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class IceServers:
    """The configured URLs; `for_participant` gives a join's list: the STUN URLs as they are,
    the TURN URLs in one entry with credentials for that identity, valid `ttl_seconds`."""

    urls: tuple[str, ...]
    secret: bytes | None = field(default=None, repr=False)
    ttl_seconds: int = 3600
    now: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        if any(is_turn(u) for u in self.urls) and not self.secret:
            raise ValueError("TURN URLs need a secret")

    def for_participant(self, identity: str) -> tuple[IceServer, ...]:
        stun = tuple(u for u in self.urls if not is_turn(u))
        turn = tuple(u for u in self.urls if is_turn(u))
        servers = [IceServer(stun)] if stun else []
        if turn:
            assert self.secret is not None  # __post_init__
            username = f"{int(self.now()) + self.ttl_seconds}:{identity}"
            servers.append(IceServer(turn, username, turn_credential(self.secret, username)))
        return tuple(servers)
