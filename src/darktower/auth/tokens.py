"""Service tokens: Ed25519-signed JWTs that one darktower service presents to another
(docs/wire-protocol.md).

A token carries `iss` and `sub` (the caller's instance id; `sub` is what a bound key vouches
for), `iat`, `exp` (short-lived: `exp - iat` at most `DEFAULT_MAX_LIFETIME_SECONDS` unless the
verifier says otherwise), optionally `aud` (the instance the token is for), `service_type`
(which kind of service the caller is) and `scope`, a space-separated set that must contain the
scope of the server called (`service.write.mc` for calls into an MC, `service.write.gc` for
calls into a GC; Dark Tower's auth controller issues lists such as
"service.write.mc internal:meeting-token"). Its header names the signing key by
`kid` = `key_id(public key)`.

`mint_service_token` makes one; `TokenVerifier.verify` checks one and returns the claims, or
raises `AuthenticationFailed(reason)` / `CallerNotAllowed`. Both are pure (no I/O, the clock
aside) so that the gRPC edge (`darktower.auth.interceptor`) stays thin.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from darktower.auth.errors import AuthenticationFailed, CallerNotAllowed
from darktower.auth.keys import TrustedKey, key_id
from darktower.auth.service_types import ServiceType

__all__ = [
    "ALGORITHM",
    "ALLOW_UNBOUND_KEYS_DEFAULT",
    "AUTHORIZATION_HEADER",
    "BEARER_PREFIX",
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_LEEWAY_SECONDS",
    "DEFAULT_MAX_LIFETIME_SECONDS",
    "DEFAULT_TTL_SECONDS",
    "GC_AUDIENCE",
    "MAX_LEEWAY_SECONDS",
    "MAX_LIFETIME_CEILING_SECONDS",
    "MAX_LIFETIME_FLOOR_SECONDS",
    "MAX_TOKEN_BYTES",
    "SCOPE_GC",
    "SCOPE_MC",
    "SCOPE_MH",
    "SERVICE_PROFILES",
    "ServiceClaims",
    "ServiceType",
    "TokenVerifier",
    "UnknownKidHook",
    "mint_service_token",
]

SCOPE_MC = "service.write.mc"  # calls into an MC (made by the GC)
SCOPE_GC = "service.write.gc"  # calls into a GC (made by MCs and MHs)
SCOPE_MH = "service.write.mh"  # calls into an MH (made by MCs; aud = the MH's id)

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
# The longest life (exp - iat) a verifier accepts by default: a stolen token is worth at most
# this long. Tokens are re-minted at two thirds of their life, so 300 s tokens fit easily.
DEFAULT_MAX_LIFETIME_SECONDS = 600
# The range an operator may set it in (`*_SERVICE_TOKEN_MAX_LIFETIME_SECONDS`): never below the
# life of the tokens the services mint (DEFAULT_TTL_SECONDS), or a fleet would refuse its own
# calls; never above an hour, so even a misconfigured verifier refuses hours-long tokens.
MAX_LIFETIME_FLOOR_SECONDS = DEFAULT_TTL_SECONDS
MAX_LIFETIME_CEILING_SECONDS = 3600
# Clock skew tolerated on exp and iat. Hosts run NTP; more than a few seconds is a fault.
DEFAULT_LEEWAY_SECONDS = 5
MAX_LEEWAY_SECONDS = 5
# A token signed by an unbound (legacy trio) key names any instance it likes: refused unless a
# server opts in (GC_ALLOW_UNBOUND_KEYS / MC_ALLOW_UNBOUND_KEYS, dev and legacy fleets only).
ALLOW_UNBOUND_KEYS_DEFAULT = False
# The audience of MC and MH tokens to a GC: one fleet-wide name, so that a caller needs no GC id
# to call the GC behind an endpoint (a GC also accepts its own id). A token minted for an MC
# (aud = that MC's id) is refused by a GC, and a GC-audience token by every MC.
GC_AUDIENCE = "darktower-gc"
# docs/reference.md. Enforced before any parsing, so that a huge header costs nothing but a
# length check.
MAX_TOKEN_BYTES = 8192

# Verified tokens remembered per verifier. A caller reuses its token for minutes
# (ServiceTokenProvider), so nearly every call presents a string already verified.
DEFAULT_CACHE_SIZE = 4096

_REQUIRED_CLAIMS = ["iss", "sub", "iat", "exp"]
_KNOWN_TYPES = frozenset(t.value for t in ServiceType)

# Called with a token's unknown kid; True when it learnt new keys (see `on_unknown_kid`).
UnknownKidHook = Callable[[str], Awaitable[bool]]


@dataclass(frozen=True)
class ServiceClaims:
    """The verified content of a service token.

    `scope` is the scope this server required (the token's set contains it); `subject` is the
    caller's instance id (`sub`); `audience` the token's `aud` values, empty when it has none.
    """

    issuer: str
    service_type: ServiceType
    scope: str
    issued_at: int
    expires_at: int
    subject: str = ""
    audience: tuple[str, ...] = ()


def mint_service_token(
    private_key: Ed25519PrivateKey,
    *,
    service_type: ServiceType,
    scope: str,
    issuer: str,
    subject: str | None = None,
    audience: str | None = None,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    now: float | None = None,
) -> str:
    """Sign a token valid from `now` (default: the current time) for `ttl_seconds`.

    `subject` (`sub`) is the caller's instance id; it defaults to `issuer`, which every service
    sets to its own id, so every token carries a `sub`. `audience` (`aud`) is the instance the
    token is for; None leaves `aud` out. The TTL is not capped here (verifiers cap it; tests mint
    long-lived tokens to prove that): `darktower token` refuses more than the maximum.

    Raises ValueError for an empty issuer, subject or audience or a non-positive TTL — a token
    that is born expired or names nobody is a programming error, not something to send.
    """
    if not issuer:
        raise ValueError("issuer must not be empty")
    if subject is not None and not subject:
        raise ValueError("subject must not be empty")
    if audience is not None and not audience:
        raise ValueError("audience must not be empty")
    if ttl_seconds <= 0:
        raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds}")
    issued_at = int(time.time() if now is None else now)
    payload: dict[str, Any] = {
        "iss": issuer,
        "sub": subject or issuer,
        "iat": issued_at,
        "exp": issued_at + ttl_seconds,
        "service_type": ServiceType(service_type).value,
        "scope": scope,
    }
    if audience is not None:
        payload["aud"] = audience
    headers = {"kid": key_id(private_key.public_key())}
    return jwt.encode(payload, private_key, algorithm=ALGORITHM, headers=headers)


def _trusted(key: Ed25519PublicKey | TrustedKey) -> TrustedKey:
    return key if isinstance(key, TrustedKey) else TrustedKey.unbound(key)


class TokenVerifier:
    """Checks service tokens for one server: its trusted keys, its scope, its callers.

    `verify` runs the checks in a fixed order and raises on the first that fails:
    size (`empty`, `too_large`) → header (`malformed`) → key (`unknown_key`) → signature
    (`bad_signature`) → expiry and required claims `iss`, `sub`, `iat`, `exp` (`expired`,
    `bad_claims`) → lifetime `exp - iat` (`too_long_lived`) → audience (`wrong_audience`) →
    scope set (`wrong_scope`) → `service_type` (`bad_claims`) → the key's binding
    (`unbound_key`, `wrong_subject`) → caller (`CallerNotAllowed`).

    `trusted_keys` are `TrustedKey`s (from `load_trusted_keys`) or bare public keys (unbound).
    A key bound to an instance vouches only for that instance: its tokens must carry
    `sub` == the instance id, and `service_type` == the key's type. A token signed by an unbound
    key is accepted only with `allow_unbound_keys`. With `audience` (one id or several), a
    token must carry one of them in `aud`; without, `aud` is not checked (transitional: the
    services will all pass their own id).

    A token that passed every check is remembered (up to `cache_size` tokens, least recently
    used evicted first); presented again, only its expiry (with the leeway) and the caller
    type are checked, so a cached token still expires on time. Failures are never remembered.
    """

    def __init__(
        self,
        trusted_keys: Sequence[Ed25519PublicKey | TrustedKey],
        *,
        required_scope: str,
        allowed_callers: Collection[ServiceType],
        audience: str | Collection[str] | None = None,
        allow_unbound_keys: bool = ALLOW_UNBOUND_KEYS_DEFAULT,
        max_lifetime_seconds: int = DEFAULT_MAX_LIFETIME_SECONDS,
        leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        # An empty trust list or caller set would reject every call; that is a
        # misconfiguration to surface at start, not a stream of UNAUTHENTICATED later.
        if not trusted_keys:
            raise ValueError("a TokenVerifier needs at least one trusted public key")
        if not allowed_callers:
            raise ValueError("a TokenVerifier needs at least one allowed caller type")
        if not 0 <= leeway_seconds <= MAX_LEEWAY_SECONDS:
            raise ValueError(
                f"leeway_seconds must be 0 to {MAX_LEEWAY_SECONDS}, got {leeway_seconds}"
            )
        if max_lifetime_seconds <= 0:
            raise ValueError(f"max_lifetime_seconds must be positive, got {max_lifetime_seconds}")
        if cache_size < 0:
            raise ValueError(f"cache_size must not be negative, got {cache_size}")
        audiences = (audience,) if isinstance(audience, str) else tuple(audience or ())
        if any(not a for a in audiences):
            raise ValueError("an audience must not be empty")
        # kid → the service type that key belongs to: from its binding, or from the key set
        # it was given in (`from_key_sets`). A token must be signed by a key of the type it claims.
        self._keys, self._key_types = _index_keys([(None, trusted_keys)])
        self._unknown_kid_hook: UnknownKidHook | None = None
        self._required_scope = required_scope
        self._allowed_callers = frozenset(ServiceType(c) for c in allowed_callers)
        self._audiences = audiences
        self._allow_unbound = allow_unbound_keys
        self._max_lifetime = max_lifetime_seconds
        self._leeway = leeway_seconds
        self._cache_size = cache_size
        self._cache: OrderedDict[str, ServiceClaims] = OrderedDict()

    @classmethod
    def from_key_sets(
        cls,
        key_sets: Mapping[ServiceType, Sequence[Ed25519PublicKey | TrustedKey]],
        *,
        required_scope: str,
        allowed_callers: Collection[ServiceType],
        audience: str | Collection[str] | None = None,
        allow_unbound_keys: bool = ALLOW_UNBOUND_KEYS_DEFAULT,
        max_lifetime_seconds: int = DEFAULT_MAX_LIFETIME_SECONDS,
        leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> TokenVerifier:
        """A verifier that trusts each key only for its own service type.

        A token signed by an MH key that claims to be an MC's is refused (`bad_claims`); a
        genuine token of a type not in `allowed_callers` is `CallerNotAllowed`
        (PERMISSION_DENIED), which a single trust list could not tell apart. The other options
        are the constructor's. A bound key given in the set of another type is a ValueError.
        """
        verifier = cls(
            [key for keys in key_sets.values() for key in keys],
            required_scope=required_scope,
            allowed_callers=allowed_callers,
            audience=audience,
            allow_unbound_keys=allow_unbound_keys,
            max_lifetime_seconds=max_lifetime_seconds,
            leeway_seconds=leeway_seconds,
            cache_size=cache_size,
        )
        verifier._keys, verifier._key_types = _index_keys(key_sets.items())
        return verifier

    def replace_keys(
        self,
        trusted_keys: Sequence[Ed25519PublicKey | TrustedKey]
        | Mapping[ServiceType, Sequence[Ed25519PublicKey | TrustedKey]],
    ) -> None:
        """Trust these keys from now on, instead of the ones given so far (key rotation).

        A flat sequence is the constructor's argument, a mapping `from_key_sets`'s. Checked like
        them (ValueError, and the old keys stay). Remembered tokens are forgotten, so a token
        of a key no longer trusted is refused from the next call on.
        """
        keys, key_types = _index_keys(
            trusted_keys.items() if isinstance(trusted_keys, Mapping) else [(None, trusted_keys)]
        )
        if not keys:
            raise ValueError("a TokenVerifier needs at least one trusted public key")
        self._keys, self._key_types = keys, key_types
        self._cache.clear()

    @property
    def kids(self) -> frozenset[str]:
        """The `kid`s of the keys trusted now."""
        return frozenset(self._keys)

    def on_unknown_kid(self, hook: UnknownKidHook | None) -> None:
        """Ask `hook(kid)` when a token names a key not trusted (see `verify_refreshing`).

        The hook may fetch keys (a JWKS) and `replace_keys` this verifier; it answers whether
        it did learn something new. It is the hook's job to bound how often it fetches: a
        caller may present as many made-up kids as it likes."""
        self._unknown_kid_hook = hook

    async def verify_refreshing(self, token: str) -> ServiceClaims:
        """`verify`, and when the token's kid is unknown and an `on_unknown_kid` hook learns
        new keys, `verify` once more: a token of a key published moments ago is accepted."""
        try:
            return self.verify(token)
        except AuthenticationFailed as exc:
            hook = self._unknown_kid_hook
            if exc.reason != "unknown_key" or hook is None:
                raise
            kid = jwt.get_unverified_header(token).get("kid")  # parsed once already
            if not isinstance(kid, str) or not await hook(kid):
                raise
        return self.verify(token)

    @property
    def required_scope(self) -> str:
        return self._required_scope

    @property
    def allowed_callers(self) -> frozenset[ServiceType]:
        return self._allowed_callers

    @property
    def audiences(self) -> tuple[str, ...]:
        return self._audiences

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
        signer_type = self._key_types.get(key.kid)
        if signer_type is not None and signer_type != claims.service_type:
            raise AuthenticationFailed("bad_claims")
        if key.instance_id is None:
            if not self._allow_unbound:
                raise AuthenticationFailed("unbound_key")
        elif claims.subject != key.instance_id:
            raise AuthenticationFailed("wrong_subject")
        if claims.service_type not in self._allowed_callers:
            raise CallerNotAllowed(claims.service_type)
        return claims

    def _decode(
        self, token: str, candidates: list[TrustedKey]
    ) -> tuple[dict[str, Any], TrustedKey]:
        for key in candidates:
            try:
                payload: dict[str, Any] = jwt.decode(
                    token,
                    key.public_key,
                    algorithms=[ALGORITHM],
                    leeway=self._leeway,
                    # The audience is checked in _claims, after the lifetime, with one reason.
                    options={"require": _REQUIRED_CLAIMS, "verify_aud": False, "verify_sub": False},
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
        subject = payload["sub"]
        issued_at = payload["iat"]
        expires_at = payload["exp"]
        for name in (issuer, subject):
            if not isinstance(name, str) or not name:
                raise AuthenticationFailed("bad_claims")
        # PyJWT accepts floats for iat/exp; we mint integers and accept only those (bool is an
        # int subclass, and never a timestamp).
        for value in (issued_at, expires_at):
            if not isinstance(value, int) or isinstance(value, bool):
                raise AuthenticationFailed("bad_claims")
        if expires_at <= issued_at:
            raise AuthenticationFailed("bad_claims")
        if expires_at - issued_at > self._max_lifetime:
            raise AuthenticationFailed("too_long_lived")
        audience = _audience(payload)
        if self._audiences and not set(audience) & set(self._audiences):
            raise AuthenticationFailed("wrong_audience")
        scope = payload.get("scope")
        if not isinstance(scope, str) or self._required_scope not in scope.split(" "):
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
            subject=subject,
            audience=audience,
        )


def _index_keys(
    key_sets: Iterable[tuple[ServiceType | None, Sequence[Ed25519PublicKey | TrustedKey]]],
) -> tuple[dict[str, TrustedKey], dict[str, ServiceType]]:
    """kid → key, and kid → the service type the key signs for (its binding's, or that of the
    set it is given in; None: a set of no type). ValueError when one key comes with two
    bindings or for two types."""
    keys: dict[str, TrustedKey] = {}
    key_types: dict[str, ServiceType] = {}
    for set_type, key_set in key_sets:
        for key in map(_trusted, key_set):
            known = keys.get(key.kid)
            if known is not None and known != key:
                raise ValueError("one public key is trusted with two different bindings")
            keys[key.kid] = key
            for key_type in (key.service_type, set_type):
                if key_type is None:
                    continue
                if key_types.get(key.kid, key_type) != key_type:
                    raise ValueError("one public key is trusted for two service types")
                key_types[key.kid] = key_type
    return keys, key_types


def _audience(payload: dict[str, Any]) -> tuple[str, ...]:
    """`aud` as a tuple: absent → (), a string → (it,), a list of strings → them (RFC 7519)."""
    raw = payload.get("aud")
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list) and all(isinstance(a, str) for a in raw):
        return tuple(raw)
    raise AuthenticationFailed("bad_claims")
