"""Who may do what on the GC's HTTP API: the access model (README "Access model").

* `POST /v1/meetings/{id}/join` needs an access token (`Authorization: Bearer <token>`,
  `darktower.auth.access_tokens`) for that meeting; the joiner is the token's: identity (`sub`)
  → user id, `name` → display name, `role` → the role the MC gives. Without a token the join is
  a guest's, allowed only with `GC_ALLOW_GUESTS=true` (random `u-…` id, participant). A token
  that is present but bad is refused even when guests are allowed: a broken application should
  see its error, not silently get guests.
* The operator reads (`/v1/controllers`, `/v1/media-handlers`, `/v1/meetings…`,
  `/v1/placements/recent`, the dashboard's data) need a token with `admin: true`, unless guests
  are allowed (a dev fleet).
* `/health/*`, `/metrics`, `/.well-known/jwks.json`, `/docs`, `/openapi.json` and the static
  pages stay open.

`decide_join` and `decide_operator` are pure: a verified grant (or the token's refusal, or no
token) in, the joiner or a refusal out. `GcAccess` does the token verification around them.
Refusals are `AccessRefused` with the HTTP status, a `reason` and a message; the HTTP edge
turns them into `{"error": "unauthenticated" | "forbidden", "reason", "message"}`.

    401 unauthenticated  token_missing, token_invalid, token_expired, unknown_key,
                         lifetime_too_long
    403 forbidden        wrong_meeting (the token names another meeting),
                         identity_mismatch (a body `user_id` that is not the token's `sub`),
                         admin_required (an operator read with a token without admin)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from darktower.auth.access_tokens import AccessGrant, AccessTokenVerifier, InvalidAccessToken
from darktower.auth.api_keys import ApiKeyRing
from darktower.gc.join.joiner import Joiner, validate_joiner

__all__ = [
    "AccessRefused",
    "GcAccess",
    "NoToken",
    "Presented",
    "bearer_token",
    "decide_join",
    "decide_operator",
]


class AccessRefused(Exception):
    """The request may not do what it asks. `status` 401 or 403."""

    def __init__(self, status: Literal[401, 403], reason: str, message: str) -> None:
        super().__init__(message)
        self.status: Literal[401, 403] = status
        self.reason = reason

    @property
    def error(self) -> Literal["unauthenticated", "forbidden"]:
        return "unauthenticated" if self.status == 401 else "forbidden"


_MISSING = AccessRefused(401, "token_missing", "an access token is required (Bearer)")


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when there is no header.
    A header of another scheme or without a token is a refusal (`token_invalid`)."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AccessRefused(401, "token_invalid", "the Authorization header must be Bearer")
    return token.strip()


@dataclass(frozen=True, slots=True)
class NoToken:
    """The request carried no token."""


Presented = AccessGrant | InvalidAccessToken | NoToken


def decide_join(
    presented: Presented,
    meeting_id: str,
    *,
    allow_guests: bool,
    body_user_id: str | None,
    body_display_name: str | None,
) -> Joiner:
    """The joiner of a join to `meeting_id`, or `AccessRefused` (see the module docstring).

    With a grant: the token's identity and role; the token's name, else the body's
    `display_name`, else the identity (each name checked by the display name rule, a bad
    one is InvalidGcRequest naming `name` or `display_name`). A body `user_id` other than the
    token's identity → 403 `identity_mismatch`. Without a token: a guest, if allowed.
    """
    match presented:
        case NoToken():
            if not allow_guests:
                raise _MISSING
            return validate_joiner(body_user_id, body_display_name)
        case InvalidAccessToken():
            raise AccessRefused(401, presented.reason, str(presented))
        case AccessGrant():
            pass
    if presented.meeting_id != meeting_id:
        raise AccessRefused(403, "wrong_meeting", "the access token is for another meeting")
    if body_user_id is not None and body_user_id != presented.identity:
        raise AccessRefused(
            403, "identity_mismatch", "user_id must be the access token's identity (sub)"
        )
    if presented.name is not None:
        return validate_joiner(
            presented.identity, presented.name, role=presented.role, name_field="name"
        )
    name = body_display_name if body_display_name is not None else presented.identity
    return validate_joiner(presented.identity, name, role=presented.role)


def decide_operator(presented: Presented, *, allow_guests: bool) -> None:
    """None when the request may read the operator API; else `AccessRefused`."""
    match presented:
        case NoToken():
            if not allow_guests:
                raise _MISSING
        case InvalidAccessToken():
            raise AccessRefused(401, presented.reason, str(presented))
        case AccessGrant():
            if not presented.admin and not allow_guests:
                raise AccessRefused(
                    403, "admin_required", "operator reads need an access token with admin"
                )


class GcAccess:
    """The GC's access check: its trusted API keys (`GC_API_KEY_FILES`, reloaded on SIGHUP
    through `keys.reload()`) and whether guests are allowed."""

    def __init__(self, keys: ApiKeyRing, *, allow_guests: bool) -> None:
        self.keys = keys
        self.allow_guests = allow_guests
        self._verifier = AccessTokenVerifier(keys.secret)

    def present(self, authorization: str | None) -> Presented:
        """What the request's `Authorization` header shows: a verified grant, the token's
        refusal, or no token; AccessRefused for a header that is not Bearer."""
        return self._present(authorization)

    def _present(self, authorization: str | None) -> Presented:
        token = bearer_token(authorization)
        if token is None:
            return NoToken()
        try:
            return self._verifier.verify(token)
        except InvalidAccessToken as exc:
            return exc

    def joiner(
        self,
        authorization: str | None,
        meeting_id: str,
        *,
        body_user_id: str | None,
        body_display_name: str | None,
    ) -> Joiner:
        return decide_join(
            self._present(authorization),
            meeting_id,
            allow_guests=self.allow_guests,
            body_user_id=body_user_id,
            body_display_name=body_display_name,
        )

    def check_operator(self, authorization: str | None) -> None:
        decide_operator(self._present(authorization), allow_guests=self.allow_guests)

    def key_id(self, authorization: str | None) -> str | None:
        """The API key id a request's valid token was signed with (for per-key limits)."""
        try:
            presented = self._present(authorization)
        except AccessRefused:
            return None
        return presented.key_id if isinstance(presented, AccessGrant) else None
