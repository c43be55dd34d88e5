"""The endpoint rule: what an MC or MH may advertise as a URL to dial.

An `http://` or `https://` URL with a host and a valid port if any, at most 255 UTF-8 bytes,
without whitespace, control characters or user info (endpoints are logged, so a credential in
one would leak). A single-label host (`http://mc-1:50052`) is valid: container and Kubernetes
service names are single-label.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import urlsplit

from darktower.common.errors import InvalidField
from darktower.common.ids import check_bytes

__all__ = ["MAX_ENDPOINT_BYTES", "validate_endpoint"]

MAX_ENDPOINT_BYTES = 255
_BAD_URL = "must be an http:// or https:// URL with a host"


def validate_endpoint(value: str, field: str) -> str:
    """`value` if it is a usable endpoint by the rule above; else `InvalidField` for `field`."""
    if not value:
        raise InvalidField(field, "required")
    check_bytes(value, field, MAX_ENDPOINT_BYTES)
    if any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in value):
        raise InvalidField(field, "must not contain whitespace or control characters")
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        raise InvalidField(field, _BAD_URL) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidField(field, _BAD_URL)
    if parts.username is not None or parts.password is not None:
        raise InvalidField(field, "must not contain user info")
    return value
