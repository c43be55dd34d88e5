"""The calling side: a cached service token, ready to put on gRPC call metadata.

`SigningKey` holds the private key a service signs with, replaceable while running (key
rotation, SIGHUP): every `ServiceTokenProvider` built on it mints with the new key from its
next token on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from darktower.auth.keys import key_id
from darktower.auth.tokens import (
    AUTHORIZATION_HEADER,
    BEARER_PREFIX,
    DEFAULT_TTL_SECONDS,
    ServiceType,
    mint_service_token,
)

__all__ = ["ServiceTokenProvider", "SigningKey"]


class SigningKey:
    """The current private key of this service; `replace` swaps it for every user at once.

    Users read `current` when they sign; `version` grows with every replacement, so a holder
    of a token minted with an older key can tell that it must mint again.
    """

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self._version = 0

    @property
    def current(self) -> Ed25519PrivateKey:
        return self._key

    @property
    def version(self) -> int:
        return self._version

    @property
    def kid(self) -> str:
        """The `kid` of the current key (its public key's fingerprint)."""
        return key_id(self._key.public_key())

    def replace(self, private_key: Ed25519PrivateKey) -> bool:
        """Sign with `private_key` from now on; False (nothing changes) if it is the same key."""
        if key_id(private_key.public_key()) == self.kid:
            return False
        self._key = private_key
        self._version += 1
        return True

    def __repr__(self) -> str:  # the fingerprint only, never the key material
        return f"SigningKey(kid={self.kid!r}, version={self._version})"


class ServiceTokenProvider:
    """Mints this service's token once and reuses it until a third of its life remains.

    Re-minting early (not at expiry) leaves a margin for the call's own duration and for clock
    skew between caller and receiver. Safe to share between threads and tasks.
    """

    def __init__(
        self,
        private_key: Ed25519PrivateKey | SigningKey,
        *,
        service_type: ServiceType,
        scope: str,
        issuer: str,
        subject: str | None = None,
        audience: str | None = None,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`subject` (`sub`, default: `issuer`) and `audience` (`aud`, default: none) are
        passed to `mint_service_token`; a caller of several audiences keeps one provider each.
        With a `SigningKey`, a token minted with a key since replaced is minted again."""
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds}")
        if not issuer:
            raise ValueError("issuer must not be empty")
        self._signing_key = (
            private_key if isinstance(private_key, SigningKey) else SigningKey(private_key)
        )
        self._minted_version = -1
        self._service_type = service_type
        self._scope = scope
        self._issuer = issuer
        self._subject = subject
        self._audience = audience
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0

    def token(self) -> str:
        """The current token, re-minted when less than a third of its life remains."""
        with self._lock:
            now = self._clock()
            version = self._signing_key.version
            if self._token is None or now >= self._refresh_at or version != self._minted_version:
                self._token = mint_service_token(
                    self._signing_key.current,
                    service_type=self._service_type,
                    scope=self._scope,
                    issuer=self._issuer,
                    subject=self._subject,
                    audience=self._audience,
                    ttl_seconds=self._ttl,
                    now=now,
                )
                # iat is truncated to whole seconds, so count the life from there.
                self._refresh_at = int(now) + self._ttl * 2 / 3
                self._minted_version = version
            return self._token

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Call metadata carrying the token: `(("authorization", "Bearer <token>"),)`."""
        return ((AUTHORIZATION_HEADER, BEARER_PREFIX + self.token()),)
