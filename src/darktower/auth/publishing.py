"""The public keys a GC publishes (its JWKS): the key it signs with now, and the keys it
signed with before, each for `retire_seconds` after it was replaced.

A token outlives the key change that follows it: a service token minted a moment before a
SIGHUP is valid for up to its lifetime, a join token handed to a client for its own. So a
replaced key stays published — and receivers that trust the JWKS keep accepting it — until no
token it signed can still be valid: by default `DEFAULT_MAX_LIFETIME_SECONDS` (600 s, the
longest lifetime a verifier accepts) plus the leeway. Then it disappears from the JWKS and
receivers drop it at their next refresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from darktower.auth.keyring import ReloadableSigningKey
from darktower.auth.keys import ServiceKey, TrustedKey
from darktower.auth.tokens import DEFAULT_LEEWAY_SECONDS, DEFAULT_MAX_LIFETIME_SECONDS

__all__ = ["DEFAULT_RETIRE_SECONDS", "PublishedKeys"]

DEFAULT_RETIRE_SECONDS = float(DEFAULT_MAX_LIFETIME_SECONDS + DEFAULT_LEEWAY_SECONDS)


@dataclass(frozen=True)
class _Retired:
    key: TrustedKey
    until: float


class PublishedKeys:
    """The JWKS content of a service that signs with `signing` (see the module doc).

    `reload()` re-reads the signing key file; when it holds a new key, the old one is retired.
    `clock` is monotonic seconds."""

    def __init__(
        self,
        signing: ReloadableSigningKey,
        *,
        retire_seconds: float = DEFAULT_RETIRE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if retire_seconds < 0:
            raise ValueError(f"retire_seconds must not be negative, got {retire_seconds}")
        self._signing = signing
        self._retire_seconds = retire_seconds
        self._clock = clock
        self._retired: list[_Retired] = []

    def reload(self) -> bool:
        """Reload the signing key (`ReloadableSigningKey.reload`); True when it changed."""
        old = self._signing.service_key
        if not self._signing.reload():
            return False
        until = self._clock() + self._retire_seconds
        self._retired = [r for r in self._retired if r.key.kid != _public(old).kid]
        self._retired.append(_Retired(_public(old), until))
        return True

    def jwks_keys(self) -> list[TrustedKey]:
        """The current key first, then the retired ones still published, newest first."""
        now = self._clock()
        self._retired = [r for r in self._retired if r.until > now]
        current = _public(self._signing.service_key)
        retired = [r.key for r in reversed(self._retired) if r.key.kid != current.kid]
        return [current, *retired]


def _public(key: ServiceKey) -> TrustedKey:
    public_key = key.private_key.public_key()
    if key.service_type is None or key.instance_id is None:
        return TrustedKey.unbound(public_key)
    return TrustedKey.bound(public_key, key.service_type, key.instance_id)
