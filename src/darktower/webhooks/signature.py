"""Webhook signatures: signing a delivery and verifying one, in one place.

Every webhook request carries

    Darktower-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>

where `secret` is the API key's secret (UTF-8) and `body` the exact bytes of the request body.
`t` is the time of this attempt (a retry a day later is signed afresh), so a receiver refuses
any signature whose `t` is more than `TOLERANCE_SECONDS` (5 min) away from its own clock: a
captured request cannot be replayed later. Several `v1=` entries may appear (one per secret,
while a key is being rotated); one match suffices. Comparisons are constant-time.

`verify` raises `SignatureError` with a `reason` (`missing`, `malformed`, `stale`, `future`,
`mismatch`) that names the failed check but never the secret or the expected value.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable
from typing import Final

__all__ = [
    "MAX_HEADER_CHARS",
    "SIGNATURE_HEADER",
    "TOLERANCE_SECONDS",
    "SignatureError",
    "compute",
    "sign",
    "verify",
]

SIGNATURE_HEADER: Final = "Darktower-Signature"
TOLERANCE_SECONDS: Final = 300
"""How far `t` may be from the verifier's clock, either way (replay window)."""
MAX_HEADER_CHARS: Final = 2048
"""A longer header is malformed (at most a few `v1=` entries of 64 hex digits fit)."""


class SignatureError(Exception):
    """A signature that does not verify; `reason` says which check failed."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"webhook signature refused: {reason}")
        self.reason = reason


def compute(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of `"<timestamp>.<body>"` keyed with `secret`."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign(secrets: str | Iterable[str], body: bytes, *, timestamp: int | None = None) -> str:
    """The `Darktower-Signature` header value for `body` (now, unless `timestamp` is given);
    one `v1=` per secret."""
    t = int(time.time()) if timestamp is None else timestamp
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    if not keys:
        raise ValueError("at least one secret is needed to sign")
    return ",".join([f"t={t}", *(f"v1={compute(key, t, body)}" for key in keys)])


def _parse(header: str) -> tuple[int, list[str]]:
    if len(header) > MAX_HEADER_CHARS:
        raise SignatureError("malformed")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError("malformed")
        if name == "t":
            if timestamp is not None or not value.isascii() or not value.isdigit():
                raise SignatureError("malformed")
            if len(value) > 12:
                raise SignatureError("malformed")
            timestamp = int(value)
        elif name == "v1":
            if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
                raise SignatureError("malformed")
            signatures.append(value)
        # Other schemes (a later v2) are ignored, as receivers of several versions must.
    if timestamp is None or not signatures:
        raise SignatureError("malformed")
    return timestamp, signatures


def verify(
    secret: str,
    header: str | None,
    body: bytes,
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> int:
    """Check `header` (the `Darktower-Signature` value) for `body`; return its timestamp.

    Raises SignatureError: `missing` (no header), `malformed`, `stale` (older than
    `tolerance` seconds), `future` (more than `tolerance` ahead), `mismatch` (no `v1` matches).
    """
    if not header:
        raise SignatureError("missing")
    timestamp, signatures = _parse(header)
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise SignatureError("stale")
    if timestamp > current + tolerance:
        raise SignatureError("future")
    expected = compute(secret, timestamp, body)
    # Every candidate is compared (no early exit on the first match): constant work per header.
    matched = False
    for candidate in signatures:
        matched |= hmac.compare_digest(candidate, expected)
    if not matched:
        raise SignatureError("mismatch")
    return timestamp
