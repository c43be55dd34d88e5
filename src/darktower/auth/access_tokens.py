"""Access tokens: what an application hands its user so that the GC lets them join.

A JWT signed HS256 with an API key's secret (`darktower.auth.api_keys`). Claims:

    iss    the API key's id (which secret signed it)                         required
    sub    the user's identity: the participant's user id (the shared rule) required
    iat    issued at, exp  expires at (seconds since the epoch)               required
    meeting  the one meeting it admits to                     required unless admin is true
    name   the display name others see (the shared rule, checked at the join); absent:
           the join body's `display_name`, else the identity
    role   "host" | "participant" (absent: participant)
    admin  true: may read the operator API (`/v1/controllers`, …, the dashboard's data)

Checks (`AccessTokenVerifier.verify`): the algorithm is pinned to HS256 (a token saying
`none`, RS256, ES256, … is refused before any key is looked at); `iss` must be a trusted key
id; the signature; `exp` and `iat` with at most 5 s of leeway; `exp - iat` at most 24 h
(`MAX_TTL_SECONDS`, a longer-lived token is refused even while it is valid); the claims' types
and the identity rule. The name is the GC's to check (a name that breaks the display name
rule is a 400 naming `name`, like one in a join body). Each refusal is an
`InvalidAccessToken` with a `reason`; messages never echo the token.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import jwt

from darktower.auth.api_keys import ApiKey
from darktower.common.errors import InvalidField
from darktower.common.ids import validate_id
from darktower.common.names import normalize_display_name, validate_user_id

__all__ = [
    "ALGORITHM",
    "DEFAULT_TTL_SECONDS",
    "LEEWAY_SECONDS",
    "MAX_TOKEN_BYTES",
    "MAX_TTL_SECONDS",
    "ROLES",
    "AccessGrant",
    "AccessTokenVerifier",
    "InvalidAccessToken",
    "mint_access_token",
]

ALGORITHM = "HS256"
MAX_TTL_SECONDS = 24 * 3600
DEFAULT_TTL_SECONDS = 3600
LEEWAY_SECONDS = 5
MAX_TOKEN_BYTES = 4096
ROLES = ("host", "participant")

Reason = Literal["token_invalid", "token_expired", "unknown_key", "lifetime_too_long"]


class InvalidAccessToken(Exception):
    """The token admits nothing. `reason`: `token_invalid` (malformed, wrong algorithm, bad
    signature, missing or malformed claims), `token_expired`, `unknown_key` (iss is no trusted
    key id), `lifetime_too_long` (exp - iat over 24 h)."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


@dataclass(frozen=True, slots=True)
class AccessGrant:
    """What a valid access token grants."""

    key_id: str
    identity: str
    name: str | None
    meeting_id: str | None
    role: Literal["host", "participant"]
    admin: bool
    expires_at: int


def mint_access_token(
    key: ApiKey,
    *,
    identity: str,
    meeting_id: str | None,
    name: str | None = None,
    role: Literal["host", "participant"] = "participant",
    admin: bool = False,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    now: float | None = None,
) -> str:
    """A token for `identity` (ValueError when a claim breaks the rules: the GC would refuse
    it anyway, better said where it is made)."""
    if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl must be 1 to {MAX_TTL_SECONDS} seconds")
    if meeting_id is None and not admin:
        raise ValueError("a token without admin needs a meeting")
    if role not in ROLES:
        raise ValueError("role must be host or participant")
    validate_user_id(identity, "identity")
    issued = int(time.time() if now is None else now)
    payload: dict[str, object] = {
        "iss": key.key_id,
        "sub": identity,
        "iat": issued,
        "exp": issued + ttl_seconds,
        "role": role,
    }
    if meeting_id is not None:
        payload["meeting"] = validate_id(meeting_id, "meeting")
    if name is not None:
        payload["name"] = normalize_display_name(name, "name")
    if admin:
        payload["admin"] = True
    return jwt.encode(payload, key.secret, algorithm=ALGORITHM)


class AccessTokenVerifier:
    """Checks access tokens against the secrets `secret_of(key_id)` knows (an `ApiKeyRing`'s
    `secret`, looked up per token, so a reload takes effect at once)."""

    def __init__(
        self, secret_of: Callable[[str], str | None], *, leeway_seconds: int = LEEWAY_SECONDS
    ) -> None:
        if not 0 <= leeway_seconds <= LEEWAY_SECONDS:
            raise ValueError(f"leeway must be 0 to {LEEWAY_SECONDS} seconds")
        self._secret_of = secret_of
        self._leeway = leeway_seconds

    def verify(self, token: str, *, now: float | None = None) -> AccessGrant:
        if not token or len(token.encode("utf-8", "surrogatepass")) > MAX_TOKEN_BYTES:
            raise InvalidAccessToken("token_invalid", "invalid access token")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise InvalidAccessToken("token_invalid", "invalid access token") from None
        if header.get("alg") != ALGORITHM:
            raise InvalidAccessToken("token_invalid", "access tokens must be signed HS256")
        key_id = unverified.get("iss")
        secret = self._secret_of(key_id) if isinstance(key_id, str) else None
        if secret is None:
            raise InvalidAccessToken("unknown_key", "the token's issuer is no trusted API key")
        try:
            payload = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                leeway=self._leeway,
                # `exp` and `iat` are checked below, against `now` (testable, one clock).
                options={
                    "require": ["iss", "sub", "iat", "exp"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError:
            raise InvalidAccessToken("token_invalid", "invalid access token") from None
        return _grant(payload, self._leeway, time.time() if now is None else now)


def _grant(payload: dict[str, object], leeway: int, now: float) -> AccessGrant:
    bad = InvalidAccessToken("token_invalid", "invalid access token")
    iat, exp = payload["iat"], payload["exp"]
    if not isinstance(iat, int) or not isinstance(exp, int) or isinstance(iat | exp, bool):
        raise bad
    if exp - iat > MAX_TTL_SECONDS:
        raise InvalidAccessToken("lifetime_too_long", "access tokens may live at most 24 h")
    if exp + leeway <= now:
        raise InvalidAccessToken("token_expired", "the access token has expired")
    if iat > now + leeway or exp <= iat:
        raise bad
    sub, meeting, name = payload["sub"], payload.get("meeting"), payload.get("name")
    role, admin = payload.get("role", "participant"), payload.get("admin", False)
    if not isinstance(sub, str) or not isinstance(admin, bool) or role not in ROLES:
        raise bad
    if name is not None and not isinstance(name, str):
        raise bad
    if meeting is None and not admin:
        raise InvalidAccessToken("token_invalid", "the access token names no meeting")
    try:
        validate_user_id(sub, "sub")
        if meeting is not None:
            if not isinstance(meeting, str):
                raise bad
            validate_id(meeting, "meeting")
    except InvalidField as exc:
        raise InvalidAccessToken("token_invalid", f"access token claim {exc}") from None
    return AccessGrant(
        key_id=str(payload["iss"]),
        identity=sub,
        name=name,
        meeting_id=meeting,
        role="host" if role == "host" else "participant",
        admin=admin,
        expires_at=exp,
    )
