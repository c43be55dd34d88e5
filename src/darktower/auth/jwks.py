"""JSON Web Key Sets of darktower service keys: encode, decode, and a fetching trust source.

A darktower JWK is an RFC 8037 Ed25519 key with its RFC 7517 `kid` (= `key_id`, the public
key's fingerprint) and, for a key bound to an instance, darktower's binding fields::

    {"kty": "OKP", "crv": "Ed25519", "x": "<base64url raw key>", "kid": "3f9c…", "use": "sig",
     "alg": "EdDSA", "darktower_service": "gc", "darktower_instance": "gc-1"}

Decoding (`keys_from_jwks`) is strict, because a JWKS is trust: the whole document is refused
(`JwksError`, and the keys already held stay) when it is not JSON, is larger than
`MAX_JWKS_BYTES`, holds more than `MAX_JWKS_KEYS` keys, or any Ed25519 key in it is malformed,
has a `kid` that is not its own fingerprint, or is bound to another service type than the one
expected (an MC trusting its GC's JWKS takes only `gc` keys). Keys of another `kty`/`crv` are
skipped (RFC 7517 §5: a set may hold keys a reader does not use).

`JwksTrustSource` fetches a JWKS URL, keeps the last good key set, refreshes it every
`refresh_seconds`, and refreshes once on demand when a token names an unknown `kid` — at most
once per `min_refresh_seconds`, so a flood of made-up kids cannot make it hammer the server.
A failed fetch is one log line (the URL without credentials or query, and the reason; never the
body) and never drops the keys it has.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import ssl
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from darktower.auth.keys import TrustedKey, key_id
from darktower.auth.service_types import SERVICE_NAMES, ServiceType
from darktower.common.errors import InvalidField
from darktower.common.ids import validate_id
from darktower.runtime.supervisor import TaskSupervisor

__all__ = [
    "DEFAULT_MIN_REFRESH_SECONDS",
    "DEFAULT_REFRESH_SECONDS",
    "INSTANCE_FIELD",
    "JWKS_PATH",
    "MAX_JWKS_BYTES",
    "MAX_JWKS_KEYS",
    "SERVICE_FIELD",
    "JwksError",
    "JwksTrustSource",
    "jwk_for",
    "jwks_document",
    "keys_from_jwks",
    "safe_url",
]

log = logging.getLogger(__name__)

JWKS_PATH = "/.well-known/jwks.json"
# A darktower JWKS holds a handful of keys (current, previous, next): a few hundred bytes each.
MAX_JWKS_BYTES = 64 * 1024
MAX_JWKS_KEYS = 32
DEFAULT_REFRESH_SECONDS = 300.0
# The shortest time between two fetches asked for by unknown kids.
DEFAULT_MIN_REFRESH_SECONDS = 10.0
DEFAULT_FETCH_TIMEOUT_SECONDS = 5.0

SERVICE_FIELD = "darktower_service"
INSTANCE_FIELD = "darktower_instance"
_SHORT_NAMES = {service_type: name for name, service_type in SERVICE_NAMES.items()}
_ED25519_RAW_BYTES = 32


class JwksError(Exception):
    """A JWKS that cannot be used; the message names what is wrong, never key material."""


def jwk_for(key: TrustedKey) -> dict[str, str]:
    """The JWK of a trusted (public) key, with its binding fields when it is bound."""
    raw = key.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii"),
        "kid": key.kid,
        "use": "sig",
        "alg": "EdDSA",
    }
    if key.service_type is not None and key.instance_id is not None:
        jwk[SERVICE_FIELD] = _SHORT_NAMES[key.service_type]
        jwk[INSTANCE_FIELD] = key.instance_id
    return jwk


def jwks_document(keys: Iterable[TrustedKey]) -> dict[str, list[dict[str, str]]]:
    """`{"keys": [...]}`, one JWK per distinct key, in the order given."""
    seen: set[str] = set()
    jwks = []
    for key in keys:
        if key.kid not in seen:
            seen.add(key.kid)
            jwks.append(jwk_for(key))
    return {"keys": jwks}


def keys_from_jwks(data: bytes, *, service_type: ServiceType) -> list[TrustedKey]:
    """The Ed25519 keys of a JWKS document, each checked (see the module doc); `JwksError`.

    `service_type`: the only type a key may be bound to; an unbound key (no binding fields)
    is trusted for that type by whoever uses the result."""
    if len(data) > MAX_JWKS_BYTES:
        raise JwksError(f"larger than {MAX_JWKS_BYTES} bytes")
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise JwksError("not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError('not a JWKS (an object with a "keys" list)')
    raw_keys: list[Any] = document["keys"]
    if len(raw_keys) > MAX_JWKS_KEYS:
        raise JwksError(f"more than {MAX_JWKS_KEYS} keys")
    keys: dict[str, TrustedKey] = {}
    for index, jwk in enumerate(raw_keys):
        if not isinstance(jwk, dict):
            raise JwksError(f"key {index} is not an object")
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        key = _key_from_jwk(jwk, index, service_type)
        if keys.get(key.kid, key) != key:
            raise JwksError(f"key {key.kid} is listed twice with different bindings")
        keys[key.kid] = key
    return list(keys.values())


def _key_from_jwk(jwk: dict[str, Any], index: int, service_type: ServiceType) -> TrustedKey:
    x, kid = jwk.get("x"), jwk.get("kid")
    if not isinstance(x, str) or not isinstance(kid, str):
        raise JwksError(f"key {index} lacks x or kid")
    if jwk.get("alg", "EdDSA") != "EdDSA" or jwk.get("use", "sig") != "sig" or "d" in jwk:
        raise JwksError(f"key {index} is not a public signing key")
    try:
        raw = base64.b64decode(x + "=" * (-len(x) % 4), altchars=b"-_", validate=True)
    except (ValueError, binascii.Error):
        raise JwksError(f"key {index}: x is not base64url") from None
    if len(raw) != _ED25519_RAW_BYTES:
        raise JwksError(f"key {index}: x is not a 32-byte Ed25519 key")
    public_key = Ed25519PublicKey.from_public_bytes(raw)
    if key_id(public_key) != kid:
        raise JwksError(f"key {index}: kid is not the key's fingerprint")
    service, instance = jwk.get(SERVICE_FIELD), jwk.get(INSTANCE_FIELD)
    if service is None and instance is None:
        return TrustedKey.unbound(public_key)
    if not isinstance(service, str) or not isinstance(instance, str):
        raise JwksError(f"key {kid}: {SERVICE_FIELD} and {INSTANCE_FIELD} must come together")
    if SERVICE_NAMES.get(service) != service_type:
        raise JwksError(
            f"key {kid} is bound to service {service!r}, not {_SHORT_NAMES[service_type]}"
        )
    try:
        validate_id(instance, "instance id")
    except InvalidField:
        raise JwksError(f"key {kid}: bad {INSTANCE_FIELD}") from None
    return TrustedKey.bound(public_key, service_type, instance)


def safe_url(url: str) -> str:
    """`url` for a log line: scheme, host, port and path; no credentials, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


KeysChanged = Callable[[list[TrustedKey]], None]


class JwksTrustSource:
    """The keys published at a JWKS URL, fetched, cached and refreshed (see the module doc).

    `on_change(keys)` is called after every fetch that changed the key set. `verify` is
    httpx's (an `ssl.SSLContext` trusting the fleet's CA for an https:// URL). `clock` is
    monotonic seconds.
    """

    def __init__(
        self,
        url: str,
        *,
        service_type: ServiceType,
        on_change: KeysChanged | None = None,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
        min_refresh_seconds: float = DEFAULT_MIN_REFRESH_SECONDS,
        timeout_seconds: float = DEFAULT_FETCH_TIMEOUT_SECONDS,
        verify: ssl.SSLContext | bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise ValueError(f"a JWKS URL must be http:// or https:// with a host: {safe_url(url)}")
        if refresh_seconds <= 0 or min_refresh_seconds < 0:
            raise ValueError("refresh intervals must be positive")
        self.url = url
        self._service_type = service_type
        self.on_change = on_change
        self._refresh_seconds = refresh_seconds
        self._min_refresh = min_refresh_seconds
        self._timeout = timeout_seconds
        self._verify = verify
        self._clock = clock
        self._keys: list[TrustedKey] = []
        # When an unknown kid last caused a fetch: the periodic ones do not count, so that a
        # rotation right after one is still picked up at once.
        self._last_demand: float | None = None
        self._inflight: asyncio.Task[bool] | None = None
        self.fetches = 0  # attempts, for tests and the curious
        self.failures = 0

    @property
    def keys(self) -> list[TrustedKey]:
        """The keys of the last good fetch (empty before one succeeded)."""
        return list(self._keys)

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(key.kid for key in self._keys)

    async def refresh(self) -> bool:
        """Fetch now (joining a fetch already running); True when the key set changed."""
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._fetch())
            self._inflight.add_done_callback(self._clear_inflight)
        return await asyncio.shield(self._inflight)

    def _clear_inflight(self, task: asyncio.Task[bool]) -> None:
        if self._inflight is task:
            self._inflight = None

    async def resolve_unknown_kid(self, kid: str) -> bool:
        """A token names `kid`, not in the set: refresh once, unless a fetch began less than
        `min_refresh_seconds` ago. True when `kid` is known afterwards (an `UnknownKidHook`)."""
        if kid in self.kids:
            return True
        if self._inflight is None:
            now = self._clock()
            if self._last_demand is not None and now - self._last_demand < self._min_refresh:
                log.debug("JWKS refresh for an unknown kid skipped: one ran moments ago")
                return False
            self._last_demand = now
        await self.refresh()
        return kid in self.kids

    async def run(self) -> None:
        """Refresh every `refresh_seconds`, until cancelled (a supervised background task)."""
        while True:
            await asyncio.sleep(self._refresh_seconds)
            await self.refresh()

    def start(self, tasks: TaskSupervisor, name: str) -> asyncio.Task[None]:
        return tasks.spawn(name, self.run())

    def fetch_blocking(self) -> bool:
        """One fetch now, blocking (at start, before the service serves); True if it changed
        the key set. A failure is logged and leaves the keys as they were."""
        self._begin()
        try:
            with (
                httpx.Client(timeout=self._timeout, verify=self._verify) as client,
                client.stream("GET", self.url, headers=_HEADERS) as response,
            ):
                _check_response(response)
                body = _capped(response.iter_bytes())
        except httpx.HTTPError as exc:
            return self._failed(_fetch_error(exc))
        except JwksError as exc:
            return self._failed(exc)
        return self._apply(body)

    async def _fetch(self) -> bool:
        self._begin()
        try:
            async with (
                httpx.AsyncClient(timeout=self._timeout, verify=self._verify) as client,
                client.stream("GET", self.url, headers=_HEADERS) as response,
            ):
                _check_response(response)
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise JwksError(f"larger than {MAX_JWKS_BYTES} bytes")
        except httpx.HTTPError as exc:
            return self._failed(_fetch_error(exc))
        except JwksError as exc:
            return self._failed(exc)
        return self._apply(bytes(body))

    def _begin(self) -> None:
        self.fetches += 1

    def _failed(self, exc: JwksError) -> bool:
        self.failures += 1
        log.error("JWKS %s not used, keeping %d keys: %s", safe_url(self.url), len(self._keys), exc)
        return False

    def _apply(self, body: bytes) -> bool:
        try:
            keys = keys_from_jwks(body, service_type=self._service_type)
        except JwksError as exc:
            return self._failed(exc)
        old = self.kids
        self._keys = keys
        new = self.kids
        if old == new:
            return False
        log.info(
            "JWKS %s: keys added %s, removed %s",
            safe_url(self.url),
            sorted(new - old) or "none",
            sorted(old - new) or "none",
        )
        if self.on_change is not None:
            self.on_change(self.keys)
        return True


_HEADERS = {"accept": "application/json"}


def _check_response(response: httpx.Response) -> None:
    """Refuse a non-200 answer, and a body declared larger than the cap before reading it."""
    if response.status_code != 200:
        raise JwksError(f"HTTP {response.status_code}")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_JWKS_BYTES:
        raise JwksError(f"larger than {MAX_JWKS_BYTES} bytes")


def _capped(chunks: Iterable[bytes]) -> bytes:
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > MAX_JWKS_BYTES:
            raise JwksError(f"larger than {MAX_JWKS_BYTES} bytes")
    return bytes(body)


def _fetch_error(exc: httpx.HTTPError) -> JwksError:
    # The type only: httpx's text may repeat the URL with its credentials.
    return JwksError(f"cannot fetch ({type(exc).__name__})")
