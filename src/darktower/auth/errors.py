"""The errors of authentication (docs/wire-protocol.md): service tokens and join tokens, one
small tree.

```
AuthError                   .code: str — a bounded string, safe as a metric label
├── AuthenticationFailed    .reason: FailureReason (and .code == .reason)
│                           → gRPC UNAUTHENTICATED, always with one fixed message
├── CallerNotAllowed        .service_type: a valid token of a caller this server does not serve
│                           (.code == "wrong_caller") → gRPC PERMISSION_DENIED
├── KeyFileError            .path: a key file that is missing, unreadable, of the wrong kind
│                           or that would be overwritten (.code == "key_file")
└── InvalidJoinToken        a join token that does not verify, one generic message
    │                       (.code == "invalid_join_token"); in `darktower.auth.join_tokens`
    └── WrongMeeting        a valid join token for another meeting (.code == "wrong_meeting")
```

No message in this tree ever contains a token or key material: a message names a reason, a
caller type or a file path, nothing else. Translation to gRPC status codes happens only at the
boundary (`darktower.auth.interceptor`), to exit codes only in `darktower.auth.cli`, and a
join-token error becomes a refusal only at the MC's signaling edge.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from darktower.auth.service_types import ServiceType

__all__ = [
    "FAILURE_REASONS",
    "WRONG_CALLER",
    "AuthError",
    "AuthenticationFailed",
    "CallerNotAllowed",
    "FailureReason",
    "KeyFileError",
]

FailureReason = Literal[
    "missing",  # no `authorization` metadata at all
    "bad_prefix",  # the value does not start with exactly "Bearer "
    "empty",  # nothing after the prefix
    "too_large",  # more than MAX_TOKEN_BYTES after the prefix (checked before any parsing)
    "malformed",  # not a JWT, or not an EdDSA one
    "unknown_key",  # `kid` names no trusted key
    "bad_signature",  # no trusted key verifies the signature
    "expired",  # `exp` is past, beyond the leeway
    "too_long_lived",  # `exp - iat` is more than the verifier's maximum lifetime
    "wrong_audience",  # the verifier requires an audience and `aud` is another or absent
    "wrong_scope",  # the `scope` set does not contain the one this server requires
    "bad_claims",  # a required claim (iss, sub, iat, exp) missing or of the wrong shape,
    # unknown service_type, or a service_type other than the signing key's
    "unbound_key",  # signed by an unbound (legacy) key, and the verifier does not allow those
    "wrong_subject",  # signed by a key bound to an instance, and `sub` is another
]
FAILURE_REASONS: tuple[FailureReason, ...] = get_args(FailureReason)

# The metric label of CallerNotAllowed, next to the FailureReason labels.
WRONG_CALLER = "wrong_caller"


class AuthError(Exception):
    """Base of every authentication error; `code` is a bounded, label-safe string."""

    code: str = "auth_error"


class AuthenticationFailed(AuthError):
    """The token is missing or invalid; `reason` says which check failed.

    The reason is for metrics and logs only: it must never be sent to the caller.
    """

    def __init__(self, reason: FailureReason) -> None:
        if reason not in FAILURE_REASONS:
            raise ValueError(f"unknown authentication failure reason {reason!r}")
        super().__init__(f"service token rejected: {reason}")
        self.reason: FailureReason = reason
        self.code = reason


class CallerNotAllowed(AuthError):
    """The token is valid, but its service type may not call this server."""

    code = WRONG_CALLER

    def __init__(self, service_type: ServiceType) -> None:
        super().__init__(f"caller type {service_type.value!r} is not allowed to call this service")
        self.service_type = service_type


class KeyFileError(AuthError):
    """A key file cannot be used; the message names the path, never the file's content."""

    code = "key_file"

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem
