"""Session binding tokens: proof that a reconnecting client is the one that held a session.

A join answer hands the client a binding token for its (correlation id, participant id); to
reconnect it shows that token (with a fresh join token for the same user) and gets the same
participant back and a new binding token. The token, before base64url (no padding), is 56 bytes
of fixed-width fields, so that splitting it is unambiguous:

    nonce      16 random bytes
    issued_at   8 bytes, unsigned big-endian, Unix seconds
    mac        32 bytes = HMAC-SHA256(key, len(cid) | cid | len(pid) | pid | nonce | issued_at)

where the ids are UTF-8 with a 2-byte big-endian length in front of each (so no two id pairs
give the same MAC input), and the key is per meeting:

    key = HKDF-SHA256(master = MC_BINDING_TOKEN_SECRET, salt = meeting id,
                      info = b"session-binding", length = 32)

Every MC of a fleet shares the master secret, so a client whose meeting moved to another MC
reconnects there with the token it holds. A token for one meeting never verifies for another.

Validity: `issued_at - skew <= now <= issued_at + ttl + skew` (TTL 30 s, skew 5 s by default);
the MAC is compared with `hmac.compare_digest`. Each nonce is good once: the first use sets
`meeting:{<id>}:nonce:<hex>` with SET NX and an expiry covering the rest of the token's
validity, a second use finds it set. Checks run in this order, cheapest and I/O-free first:
format (malformed) → MAC (forged) → time (expired) → nonce (replayed), so that neither a
garbage token nor a forged one ever reaches Redis.

Errors: `InvalidBinding.reason` is one of `BindingRefusal`; it goes to the metric
`mc_binding_refusals_total{reason}` and the logs, the client sees only `invalid_binding`. The
secret and derived keys are never in a message, a repr or a metric.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from redis.exceptions import RedisError

from darktower.fencing import StoreUnavailable
from darktower.fencing.keys import binding_nonce_key
from darktower.runtime.redis_connect import RedisLike

__all__ = [
    "BINDING_CLOCK_SKEW_SECONDS",
    "BINDING_TOKEN_TTL_SECONDS",
    "BindingRefusal",
    "CheckedBinding",
    "InvalidBinding",
    "NonceLedger",
    "RedisNonceLedger",
    "SessionBinder",
    "check_binding_token",
    "derive_meeting_key",
    "mint_binding_token",
]

BINDING_TOKEN_TTL_SECONDS = 30
BINDING_CLOCK_SKEW_SECONDS = 5
HKDF_INFO = b"session-binding"

_NONCE_BYTES = 16
_TIME = struct.Struct(">Q")
_MAC_BYTES = hashlib.sha256().digest_size
_TOKEN_BYTES = _NONCE_BYTES + _TIME.size + _MAC_BYTES
# base64url without padding of 56 bytes is 75 characters; anything longer is not a token.
_MAX_TOKEN_CHARS = 80
_MAX_ID_BYTES = 0xFFFF


class BindingRefusal(StrEnum):
    MALFORMED = "malformed"  # not base64url, wrong length
    FORGED = "forged"  # MAC mismatch: another secret, meeting, participant or correlation id
    EXPIRED = "expired"  # older than TTL + skew, or issued more than skew in the future
    REPLAYED = "replayed"  # its nonce was used before


class InvalidBinding(Exception):
    """A binding token that does not bind; `reason` is for metrics and logs only."""

    def __init__(self, reason: BindingRefusal) -> None:
        super().__init__(f"invalid binding token ({reason})")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CheckedBinding:
    """A token that passed format, MAC and time checks; its nonce is not spent yet."""

    nonce: bytes
    issued_at: int


def derive_meeting_key(secret: bytes, meeting_id: str) -> bytes:
    """The meeting's MAC key: HKDF-SHA256(secret, salt = meeting id, info = session-binding)."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=meeting_id.encode("utf-8"),
        info=HKDF_INFO,
    ).derive(secret)


def _length_prefixed(value: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > _MAX_ID_BYTES:
        raise ValueError("id too long for a binding token")
    return struct.pack(">H", len(raw)) + raw


def _mac(key: bytes, correlation_id: str, participant_id: str, nonce: bytes, stamp: bytes) -> bytes:
    message = _length_prefixed(correlation_id) + _length_prefixed(participant_id) + nonce + stamp
    return hmac.new(key, message, hashlib.sha256).digest()


def mint_binding_token(
    secret: bytes,
    *,
    meeting_id: str,
    correlation_id: str,
    participant_id: str,
    now: float | None = None,
    nonce: bytes | None = None,
) -> str:
    """A new token for (correlation id, participant id) in `meeting_id`, issued at `now`."""
    nonce = secrets.token_bytes(_NONCE_BYTES) if nonce is None else nonce
    if len(nonce) != _NONCE_BYTES:
        raise ValueError(f"nonce must be {_NONCE_BYTES} bytes")
    stamp = _TIME.pack(int(time.time() if now is None else now))
    mac = _mac(derive_meeting_key(secret, meeting_id), correlation_id, participant_id, nonce, stamp)
    return base64.urlsafe_b64encode(nonce + stamp + mac).rstrip(b"=").decode("ascii")


def _decode(token: str) -> bytes:
    if not token or len(token) > _MAX_TOKEN_CHARS or not token.isascii():
        raise InvalidBinding(BindingRefusal.MALFORMED)
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidBinding(BindingRefusal.MALFORMED) from None
    if len(raw) != _TOKEN_BYTES:
        raise InvalidBinding(BindingRefusal.MALFORMED)
    return raw


def check_binding_token(
    secret: bytes,
    token: str,
    *,
    meeting_id: str,
    correlation_id: str,
    participant_id: str,
    now: float | None = None,
    ttl_seconds: int = BINDING_TOKEN_TTL_SECONDS,
    skew_seconds: int = BINDING_CLOCK_SKEW_SECONDS,
) -> CheckedBinding:
    """Format, MAC and time checks (pure: the nonce is not spent); InvalidBinding otherwise."""
    raw = _decode(token)
    nonce = raw[:_NONCE_BYTES]
    stamp = raw[_NONCE_BYTES : _NONCE_BYTES + _TIME.size]
    mac = raw[_NONCE_BYTES + _TIME.size :]
    try:
        expected = _mac(
            derive_meeting_key(secret, meeting_id), correlation_id, participant_id, nonce, stamp
        )
    except ValueError:
        raise InvalidBinding(BindingRefusal.FORGED) from None
    if not hmac.compare_digest(mac, expected):
        raise InvalidBinding(BindingRefusal.FORGED)
    (issued_at,) = _TIME.unpack(stamp)
    current = time.time() if now is None else now
    if issued_at - current > skew_seconds or current - issued_at > ttl_seconds + skew_seconds:
        raise InvalidBinding(BindingRefusal.EXPIRED)
    return CheckedBinding(nonce=nonce, issued_at=issued_at)


class NonceLedger(Protocol):
    """Where spent nonces are remembered (Redis: shared by every MC of the fleet)."""

    async def spend(self, meeting_id: str, nonce_hex: str, ttl_seconds: int) -> bool:
        """Mark the nonce used for `ttl_seconds`; False if it was used before.
        Raises StoreUnavailable when the ledger cannot answer."""
        ...


class RedisNonceLedger:
    """`SET meeting:{<id>}:nonce:<hex> 1 NX EX ttl` (the meeting's hash slot)."""

    def __init__(self, client: RedisLike) -> None:
        self._client = client

    def __repr__(self) -> str:
        return "RedisNonceLedger()"

    async def spend(self, meeting_id: str, nonce_hex: str, ttl_seconds: int) -> bool:
        key = binding_nonce_key(meeting_id, nonce_hex)
        try:
            applied = await self._client.set(key, "1", nx=True, ex=max(1, ttl_seconds))
        except (RedisError, OSError) as exc:
            # Never the exception text: redis-py's connection errors name host and port.
            raise StoreUnavailable(f"redis unavailable: {type(exc).__name__}") from exc
        return bool(applied)


class SessionBinder:
    """Mints and verifies binding tokens with the MC's master secret and a nonce ledger."""

    def __init__(
        self,
        secret: bytes,
        ledger: NonceLedger,
        *,
        ttl_seconds: int = BINDING_TOKEN_TTL_SECONDS,
        skew_seconds: int = BINDING_CLOCK_SKEW_SECONDS,
    ) -> None:
        if not secret:
            raise ValueError("the binding token secret must not be empty")
        self._secret = secret
        self._ledger = ledger
        self.ttl_seconds = ttl_seconds
        self.skew_seconds = skew_seconds

    def __repr__(self) -> str:
        return f"SessionBinder(ttl_seconds={self.ttl_seconds}, skew_seconds={self.skew_seconds})"

    def mint(self, meeting_id: str, correlation_id: str, participant_id: str) -> str:
        return mint_binding_token(
            self._secret,
            meeting_id=meeting_id,
            correlation_id=correlation_id,
            participant_id=participant_id,
        )

    async def verify(
        self,
        token: str,
        *,
        meeting_id: str,
        correlation_id: str,
        participant_id: str,
        now: float | None = None,
    ) -> None:
        """Return if the token binds and its nonce was unused (it is spent now); raise
        InvalidBinding otherwise, or StoreUnavailable when the nonce cannot be checked."""
        current = time.time() if now is None else now
        checked = check_binding_token(
            self._secret,
            token,
            meeting_id=meeting_id,
            correlation_id=correlation_id,
            participant_id=participant_id,
            now=current,
            ttl_seconds=self.ttl_seconds,
            skew_seconds=self.skew_seconds,
        )
        # Remembered for as long as the token could still pass the time check, plus a second.
        remaining = int(checked.issued_at + self.ttl_seconds + self.skew_seconds - current) + 1
        if not await self._ledger.spend(meeting_id, checked.nonce.hex(), remaining):
            raise InvalidBinding(BindingRefusal.REPLAYED)
