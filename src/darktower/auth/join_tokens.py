"""Meeting join tokens: short-lived Ed25519 JWTs the GC hands to a client with its join answer,
which the meeting's MC checks when the client connects.

Claims: `iss` (GC id), `iat`, `exp`, `aud` = "darktower-meeting-join", `sub` (user id),
`mid` (meeting id), `jti` (a random id: the MC accepts each token for one join), `name`
(display name), `role` (`host` | `participant`: what the joiner's
access token granted; absent is `participant`). Distinct from service tokens: another
audience, and no `scope` / `service_type`, so neither kind can stand in for the other.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from darktower.auth.errors import AuthError
from darktower.auth.keys import TrustedKey, key_id
from darktower.auth.tokens import ALGORITHM, DEFAULT_LEEWAY_SECONDS, MAX_TOKEN_BYTES
from darktower.common.limits import MAX_DISPLAY_NAME_CHARS

__all__ = [
    "JOIN_AUDIENCE",
    "JOIN_TOKEN_TTL_SECONDS",
    "ROLES",
    "InvalidJoinToken",
    "JoinClaims",
    "JoinTokenVerifier",
    "WrongMeeting",
    "mint_join_token",
]

JOIN_AUDIENCE = "darktower-meeting-join"
JOIN_TOKEN_TTL_SECONDS = 120
ROLES = ("host", "participant")
_JTI = re.compile(r"[0-9a-f]{32}")


class InvalidJoinToken(AuthError):
    """Bad signature, unknown key, expired, malformed or missing claims. The message is generic."""

    code = "invalid_join_token"


class WrongMeeting(InvalidJoinToken):
    """A valid join token, but for another meeting."""

    code = "wrong_meeting"


@dataclass(frozen=True, slots=True)
class JoinClaims:
    meeting_id: str
    user_id: str
    display_name: str
    issuer: str
    expires_at: int
    role: str = "participant"
    token_id: str = ""  # the `jti`: 32 lower-case hex digits


def mint_join_token(
    private_key: Ed25519PrivateKey,
    *,
    meeting_id: str,
    user_id: str,
    display_name: str,
    issuer: str,
    role: str = "participant",
    ttl_seconds: int = JOIN_TOKEN_TTL_SECONDS,
    now: float | None = None,
) -> str:
    issued = int(time.time() if now is None else now)
    payload = {
        "iss": issuer,
        "iat": issued,
        "exp": issued + ttl_seconds,
        "aud": JOIN_AUDIENCE,
        "sub": user_id,
        "mid": meeting_id,
        "jti": secrets.token_hex(16),
        "name": display_name[:MAX_DISPLAY_NAME_CHARS],
        "role": role,
    }
    headers = {"kid": key_id(private_key.public_key())}
    return jwt.encode(payload, private_key, algorithm=ALGORITHM, headers=headers)


def _key_id_of(token: str) -> str | None:
    """The `kid` a token's header names, read without checking anything else (None when
    there is none): it only picks the key that `jwt.decode_complete` then verifies with. The
    token is parsed once by PyJWT, instead of a second time by `jwt.get_unverified_header`
    (which decodes every segment, the payload and signature too, character by character)."""
    segment = token.partition(".")[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, TypeError, RecursionError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


def _public(key: Ed25519PublicKey | TrustedKey) -> Ed25519PublicKey:
    return key.public_key if isinstance(key, TrustedKey) else key


class JoinTokenVerifier:
    """Checks join tokens against the trusted GC keys (the MC's `MC_TRUSTED_GC_KEY_FILES`)."""

    def __init__(
        self,
        trusted_gc_keys: Sequence[Ed25519PublicKey],
        *,
        leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
    ) -> None:
        if not trusted_gc_keys:
            raise ValueError("a JoinTokenVerifier needs at least one trusted GC key")
        self._keys = {key_id(k): k for k in trusted_gc_keys}
        self._leeway = leeway_seconds

    def replace_keys(self, trusted_gc_keys: Sequence[Ed25519PublicKey | TrustedKey]) -> None:
        """Trust these GC keys from now on (key rotation: a `KeyRing` listener)."""
        if not trusted_gc_keys:
            raise ValueError("a JoinTokenVerifier needs at least one trusted GC key")
        self._keys = {key_id(k): k for k in (_public(k) for k in trusted_gc_keys)}

    def verify(self, token: str, *, meeting_id: str | None = None) -> JoinClaims:
        """The claims of a valid token; `meeting_id`, when given, must be the token's."""
        if not token or len(token.encode("utf-8", "surrogatepass")) > MAX_TOKEN_BYTES:
            raise InvalidJoinToken("invalid join token")
        kid = _key_id_of(token)
        key = self._keys.get(kid) if kid is not None else None
        if key is None:
            raise InvalidJoinToken("invalid join token")
        try:
            # PyJWT parses the token once here, strictly, header included: the key chosen by
            # `_key_id_of`'s lenient look is used only if PyJWT's header names the same kid.
            decoded = jwt.decode_complete(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=JOIN_AUDIENCE,
                leeway=self._leeway,
                options={"require": ["iss", "iat", "exp", "aud", "sub", "mid", "jti"]},
            )
        except jwt.InvalidTokenError:
            raise InvalidJoinToken("invalid join token") from None
        header, payload = decoded["header"], decoded["payload"]
        if header.get("kid") != kid or header.get("alg") != ALGORITHM:
            raise InvalidJoinToken("invalid join token")
        claims = (payload.get("mid"), payload.get("sub"), payload.get("name", ""))
        if not all(isinstance(c, str) for c in claims) or not claims[0] or not claims[1]:
            raise InvalidJoinToken("invalid join token")
        mid, sub, name = (str(c) for c in claims)
        role = payload.get("role", "participant")
        jti = payload["jti"]
        if role not in ROLES or not isinstance(jti, str) or not _JTI.fullmatch(jti):
            raise InvalidJoinToken("invalid join token")
        if meeting_id is not None and mid != meeting_id:
            raise WrongMeeting("join token is for another meeting")
        return JoinClaims(
            meeting_id=mid,
            user_id=sub,
            display_name=name,
            issuer=str(payload["iss"]),
            expires_at=int(payload["exp"]),
            role=str(role),
            token_id=jti,
        )
