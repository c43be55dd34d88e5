"""Service tokens: Ed25519-signed JWTs that one darktower service presents to another (SPEC §5).

A token carries `iss` (the caller's id), `iat`, `exp` (short-lived), `service_type` (which kind
of service the caller is) and `scope` (which kind of service it may call:
`service.write.mc` for calls into an MC, `service.write.gc` for calls into a GC). Its header
names the signing key by `kid` = `key_id(public key)`.

`mint_service_token` makes one; `TokenVerifier.verify` checks one and returns the claims, or
raises `AuthenticationFailed(reason)` / `CallerNotAllowed`. Both are pure (no I/O, the clock
aside) so that the gRPC edge (`darktower.auth.interceptor`) stays thin.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from darktower.auth.errors import AuthenticationFailed, CallerNotAllowed
from darktower.auth.keys import key_id

__all__ = [
    "ALGORITHM",
    "AUTHORIZATION_HEADER",
    "BEARER_PREFIX",
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_LEEWAY_SECONDS",
    "DEFAULT_TTL_SECONDS",
    "MAX_TOKEN_BYTES",
    "SCOPE_GC",
    "SCOPE_MC",
    "SERVICE_PROFILES",
    "ServiceClaims",
    "ServiceType",
    "TokenVerifier",
    "mint_service_token",
]


class ServiceType(StrEnum):
    """The kind of service a token was minted for (claim `service_type`)."""

    GLOBAL_CONTROLLER = "global-controller"
    MEETING_CONTROLLER = "meeting-controller"
    MEDIA_HANDLER = "media-handler"


SCOPE_MC = "service.write.mc"  # calls into an MC (made by the GC)
SCOPE_GC = "service.write.gc"  # calls into a GC (made by MCs and MHs)

# CLI short name → (who the caller is, what it may call). A service only ever mints tokens for
# the servers it calls, so the scope follows from the type.
SERVICE_PROFILES: dict[str, tuple[ServiceType, str]] = {
    "gc": (ServiceType.GLOBAL_CONTROLLER, SCOPE_MC),
    "mc": (ServiceType.MEETING_CONTROLLER, SCOPE_GC),
    "mh": (ServiceType.MEDIA_HANDLER, SCOPE_GC),
}

# The wire form: gRPC metadata `authorization: Bearer <token>`, prefix case-sensitive.
AUTHORIZATION_HEADER = "authorization"
BEARER_PREFIX = "Bearer "

ALGORITHM = "EdDSA"
DEFAULT_TTL_SECONDS = 300
DEFAULT_LEEWAY_SECONDS = 30
# SPEC §7. Enforced before any parsing, so that a huge header costs nothing but a length check.
MAX_TOKEN_BYTES = 8192

# Verified tokens remembered per verifier. A caller reuses its token for minutes
# (ServiceTokenProvider), so nearly every call presents a string already verified.
DEFAULT_CACHE_SIZE = 4096

_REQUIRED_CLAIMS = ["iss", "iat", "exp"]
_KNOWN_TYPES = frozenset(t.value for t in ServiceType)


@dataclass(frozen=True)
class ServiceClaims:
    """The verified content of a service token."""

    issuer: str
    service_type: ServiceType
    scope: str
    issued_at: int
    expires_at: int


def mint_service_token(
    private_key: Ed25519PrivateKey,
    *,
    service_type: ServiceType,
    scope: str,
    issuer: str,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    now: float | None = None,
) -> str:
    """Sign a token valid from `now` (default: the current time) for `ttl_seconds`.

    Raises ValueError for an empty issuer or a non-positive TTL — a token that is born expired
    or names nobody is a programming error, not something to send.
    """
    if not issuer:
        raise ValueError("issuer must not be empty")
    if ttl_seconds <= 0:
        raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds}")
    issued_at = int(time.time() if now is None else now)
    payload: dict[str, Any] = {
        "iss": issuer,
        "iat": issued_at,
        "exp": issued_at + ttl_seconds,
        "service_type": ServiceType(service_type).value,
        "scope": scope,
    }
    headers = {"kid": key_id(private_key.public_key())}
    return jwt.encode(payload, private_key, algorithm=ALGORITHM, headers=headers)


class TokenVerifier:
    """Checks service tokens for one server: its trusted keys, its scope, its callers.

    `verify` runs the checks in a fixed order and raises on the first that fails:
    size (`empty`, `too_large`) → header (`malformed`) → key (`unknown_key`) → signature
    (`bad_signature`) → expiry and required claims (`expired`, `bad_claims`) → scope
    (`wrong_scope`) → `service_type` (`bad_claims`) → caller (`CallerNotAllowed`).

    A token that passed every check is remembered (up to `cache_size` tokens, least recently
    used evicted first); presented again, only its expiry (with the leeway) and the caller
    type are checked, so a cached token still expires on time. Failures are never remembered.
    """

    def __init__(
        self,
        trusted_keys: Sequence[Ed25519PublicKey],
        *,
        required_scope: str,
        allowed_callers: Collection[ServiceType],
        leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        # An empty trust list or caller set would reject every call; that is a
        # misconfiguration to surface at start, not a stream of UNAUTHENTICATED later.
        if not trusted_keys:
            raise ValueError("a TokenVerifier needs at least one trusted public key")
        if not allowed_callers:
            raise ValueError("a TokenVerifier needs at least one allowed caller type")
        if leeway_seconds < 0:
            raise ValueError(f"leeway_seconds must not be negative, got {leeway_seconds}")
        self._keys: dict[str, Ed25519PublicKey] = {key_id(k): k for k in trusted_keys}
        # kid → the service type that key belongs to, when the verifier was built from key
        # sets: a token must then be signed by a key of the type it claims.
        self._key_types: dict[str, ServiceType] = {}
        self._required_scope = required_scope
        self._allowed_callers = frozenset(ServiceType(c) for c in allowed_callers)
        self._leeway = leeway_seconds
        if cache_size < 0:
            raise ValueError(f"cache_size must not be negative, got {cache_size}")
        self._cache_size = cache_size
        self._cache: OrderedDict[str, ServiceClaims] = OrderedDict()

    @classmethod
    def from_key_sets(
        cls,
        key_sets: Mapping[ServiceType, Sequence[Ed25519PublicKey]],
        *,
        required_scope: str,
        allowed_callers: Collection[ServiceType],
        leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> TokenVerifier:
        """A verifier that trusts each key only for its own service type.

        A token signed by an MH key that claims to be an MC's is refused (`bad_claims`); a
        genuine token of a type not in `allowed_callers` is `CallerNotAllowed`
        (PERMISSION_DENIED), which a single trust list could not tell apart.
        """
        verifier = cls(
            [key for keys in key_sets.values() for key in keys],
            required_scope=required_scope,
            allowed_callers=allowed_callers,
            leeway_seconds=leeway_seconds,
            cache_size=cache_size,
        )
        for service_type, keys in key_sets.items():
            for key in keys:
                kid = key_id(key)
                if verifier._key_types.get(kid, service_type) != service_type:
                    raise ValueError("one public key is trusted for two service types")
                verifier._key_types[kid] = service_type
        return verifier

    @property
    def required_scope(self) -> str:
        return self._required_scope

    @property
    def allowed_callers(self) -> frozenset[ServiceType]:
        return self._allowed_callers

    def verify(self, token: str) -> ServiceClaims:
        """Return the claims of a valid token of an allowed caller.

        Raises `AuthenticationFailed(reason)` for an invalid token and `CallerNotAllowed` for a
        valid one whose `service_type` is not among `allowed_callers`.
        """
        cached = self._cache.get(token)
        if cached is not None:
            return self._recheck(token, cached)
        claims = self._verify(token)
        if self._cache_size:
            self._cache[token] = claims
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return claims

    def _recheck(self, token: str, claims: ServiceClaims) -> ServiceClaims:
        """A remembered token: still unexpired (PyJWT's rule: exp + leeway > now) and of an
        allowed caller; the signature, key and other claims were checked when it was stored."""
        if claims.expires_at + self._leeway <= time.time():
            del self._cache[token]
            raise AuthenticationFailed("expired")
        if claims.service_type not in self._allowed_callers:
            raise CallerNotAllowed(claims.service_type)
        self._cache.move_to_end(token)
        return claims

    def _verify(self, token: str) -> ServiceClaims:
        if not token:
            raise AuthenticationFailed("empty")
        if len(token.encode("utf-8", "surrogatepass")) > MAX_TOKEN_BYTES:
            raise AuthenticationFailed("too_large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise AuthenticationFailed("malformed") from exc
        # Pinning the algorithm here (and again in decode) shuts out alg=none/HS256 confusion.
        if header.get("alg") != ALGORITHM:
            raise AuthenticationFailed("malformed")
        kid = header.get("kid")
        if kid is None:
            candidates = list(self._keys.values())
        elif not isinstance(kid, str):
            raise AuthenticationFailed("malformed")
        elif kid in self._keys:
            candidates = [self._keys[kid]]
        else:
            raise AuthenticationFailed("unknown_key")

        payload, key = self._decode(token, candidates)
        claims = self._claims(payload)
        signer_type = self._key_types.get(kid if kid is not None else key_id(key))
        if signer_type is not None and signer_type != claims.service_type:
            raise AuthenticationFailed("bad_claims")
        if claims.service_type not in self._allowed_callers:
            raise CallerNotAllowed(claims.service_type)
        return claims

    def _decode(
        self, token: str, candidates: list[Ed25519PublicKey]
    ) -> tuple[dict[str, Any], Ed25519PublicKey]:
        for key in candidates:
            try:
                payload: dict[str, Any] = jwt.decode(
                    token,
                    key,
                    algorithms=[ALGORITHM],
                    leeway=self._leeway,
                    options={"require": _REQUIRED_CLAIMS},
                )
            except jwt.InvalidSignatureError:
                continue  # without a kid, another trusted key may still match
            except jwt.ExpiredSignatureError as exc:
                raise AuthenticationFailed("expired") from exc
            except (
                jwt.MissingRequiredClaimError,
                jwt.ImmatureSignatureError,  # iat in the future, beyond the leeway
                jwt.InvalidIssuedAtError,
            ) as exc:
                raise AuthenticationFailed("bad_claims") from exc
            except jwt.InvalidTokenError as exc:
                raise AuthenticationFailed("malformed") from exc
            return payload, key
        raise AuthenticationFailed("bad_signature")

    def _claims(self, payload: dict[str, Any]) -> ServiceClaims:
        issuer = payload["iss"]
        issued_at = payload["iat"]
        expires_at = payload["exp"]
        if not isinstance(issuer, str) or not issuer:
            raise AuthenticationFailed("bad_claims")
        # PyJWT accepts floats for iat/exp; we mint integers and accept only those (bool is an
        # int subclass, and never a timestamp).
        for value in (issued_at, expires_at):
            if not isinstance(value, int) or isinstance(value, bool):
                raise AuthenticationFailed("bad_claims")
        if payload.get("scope") != self._required_scope:
            raise AuthenticationFailed("wrong_scope")
        raw_type = payload.get("service_type")
        if not isinstance(raw_type, str) or raw_type not in _KNOWN_TYPES:
            raise AuthenticationFailed("bad_claims")
        service_type = ServiceType(raw_type)
        return ServiceClaims(
            issuer=issuer,
            service_type=service_type,
            scope=self._required_scope,
            issued_at=issued_at,
            expires_at=expires_at,
        )
