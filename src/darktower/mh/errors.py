"""The MH's errors, each with a code; the gRPC edge (`grpc_service`) maps them once.

::

    MhError
    ├── InvalidMhRequest   a malformed request (INVALID_ARGUMENT)
    ├── MhAtCapacity       too many rooms, or participants in one room (RESOURCE_EXHAUSTED)
    └── MediaUnavailable   Janus is down or failed the request (UNAVAILABLE)
"""

from __future__ import annotations

__all__ = ["InvalidMhRequest", "MediaUnavailable", "MhAtCapacity", "MhError"]


class MhError(Exception):
    code = "mh_error"


class InvalidMhRequest(MhError):
    code = "invalid_argument"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


class MhAtCapacity(MhError):
    code = "at_capacity"


class MediaUnavailable(MhError):
    code = "media_unavailable"
