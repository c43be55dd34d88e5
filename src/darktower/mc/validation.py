"""Validation of `AssignMeetingWithMh` requests and their conversion to domain objects.

Everything a request carries ends up in Redis keys, Redis values or logs, so the rules are
strict: ids are `[A-Za-z0-9_-]` only (they go inside Redis hash tags, where a brace would
move the key to another slot), every string is at most 255 UTF-8 bytes, endpoints are plain
`http(s)://` URLs. The first problem found raises `InvalidArgument` naming the field.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from darktower.mc.errors import InvalidArgument
from darktower.wire.dark_tower import internal_pb2 as pb

__all__ = [
    "ID_PATTERN",
    "MAX_MH_ASSIGNMENTS",
    "MAX_STRING_BYTES",
    "AssignRequest",
    "MhRole",
    "MhTarget",
    "mh_list_json",
    "validate_assign",
    "validate_endpoint",
    "validate_meeting_id",
]

MAX_STRING_BYTES = 255
MAX_MH_ASSIGNMENTS = 16
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,255}")
"""Used with `fullmatch`. Never allows braces: ids go into Redis hash tags."""


class MhRole(StrEnum):
    """The role of a Media Handler in a meeting; mirrors `pb.MhRole`."""

    UNSPECIFIED = "unspecified"
    PRIMARY = "primary"
    BACKUP = "backup"

    @classmethod
    def from_proto(cls, value: int) -> MhRole:
        """The role for a wire number; `ValueError` for a number `pb.MhRole` does not define."""
        try:
            return _FROM_PROTO[value]
        except KeyError:
            raise ValueError(f"undefined MhRole {value}") from None

    def to_proto(self) -> pb.MhRole.ValueType:
        """The wire number of this role."""
        return _TO_PROTO[self]


_TO_PROTO: dict[MhRole, pb.MhRole.ValueType] = {
    MhRole.UNSPECIFIED: pb.MH_ROLE_UNSPECIFIED,
    MhRole.PRIMARY: pb.MH_ROLE_PRIMARY,
    MhRole.BACKUP: pb.MH_ROLE_BACKUP,
}
_FROM_PROTO: dict[int, MhRole] = {number: role for role, number in _TO_PROTO.items()}


@dataclass(frozen=True, slots=True)
class MhTarget:
    """One Media Handler a meeting should use, already validated."""

    mh_id: str
    endpoint: str
    role: MhRole


@dataclass(frozen=True, slots=True)
class AssignRequest:
    """A validated `AssignMeetingWithMhRequest`; `mhs` keeps the request's rank order."""

    meeting_id: str
    mhs: tuple[MhTarget, ...]
    requesting_gc_id: str


def _check_length(value: str, field: str) -> None:
    if len(value.encode("utf-8")) > MAX_STRING_BYTES:
        raise InvalidArgument(field, f"must be at most {MAX_STRING_BYTES} bytes")


def _validate_id(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(field, "required")
    _check_length(value, field)
    if ID_PATTERN.fullmatch(value) is None:
        raise InvalidArgument(field, "must be letters, digits, '-' or '_'")
    return value


def validate_meeting_id(value: str, field: str = "meeting_id") -> str:
    """Return `value` if it is a usable meeting id, else raise `InvalidArgument` for `field`.

    Non-empty, at most 255 UTF-8 bytes, and only letters, digits, `-` and `_`.
    """
    return _validate_id(value, field)


_BAD_URL = "must be an http:// or https:// URL with a host"


def validate_endpoint(value: str, field: str) -> str:
    """Return `value` if it is a usable MH endpoint, else raise `InvalidArgument` for `field`.

    An `http://` or `https://` URL with a host and a valid port if any, at most 255 UTF-8
    bytes, without whitespace, control characters or user info (endpoints are logged, so a
    credential in one would leak).
    """
    if not value:
        raise InvalidArgument(field, "required")
    _check_length(value, field)
    if any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in value):
        raise InvalidArgument(field, "must not contain whitespace or control characters")
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        raise InvalidArgument(field, _BAD_URL) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(field, _BAD_URL)
    if parts.username is not None or parts.password is not None:
        raise InvalidArgument(field, "must not contain user info")
    return value


def _validate_mh(assignment: pb.MhAssignment, index: int, seen: set[str]) -> MhTarget:
    prefix = f"mh_assignments[{index}]"
    mh_id = _validate_id(assignment.mh_id, f"{prefix}.mh_id")
    if mh_id in seen:
        raise InvalidArgument(f"{prefix}.mh_id", f"duplicate MH id {mh_id!r}")
    endpoint = validate_endpoint(
        assignment.webtransport_endpoint, f"{prefix}.webtransport_endpoint"
    )
    try:
        role = MhRole.from_proto(assignment.role)
    except ValueError:
        raise InvalidArgument(f"{prefix}.role", "must be a defined MhRole") from None
    seen.add(mh_id)
    return MhTarget(mh_id=mh_id, endpoint=endpoint, role=role)


def validate_assign(req: pb.AssignMeetingWithMhRequest) -> AssignRequest:
    """Convert `req` into an `AssignRequest` or raise `InvalidArgument` for its first problem.

    Checked in order: `meeting_id`; the list `mh_assignments` (1 to 16 entries); each entry
    in order (`mh_id`, no duplicate `mh_id`, `webtransport_endpoint`, `role`); then
    `requesting_gc_id`, which may be empty.
    """
    meeting_id = validate_meeting_id(req.meeting_id)
    count = len(req.mh_assignments)
    if count == 0:
        raise InvalidArgument("mh_assignments", "at least one MH assignment is required")
    if count > MAX_MH_ASSIGNMENTS:
        raise InvalidArgument(
            "mh_assignments", f"at most {MAX_MH_ASSIGNMENTS} MH assignments are allowed"
        )
    seen: set[str] = set()
    mhs = tuple(_validate_mh(a, i, seen) for i, a in enumerate(req.mh_assignments))
    gc_id = req.requesting_gc_id
    if gc_id:
        _validate_id(gc_id, "requesting_gc_id")
    return AssignRequest(meeting_id=meeting_id, mhs=mhs, requesting_gc_id=gc_id)


def mh_list_json(mhs: Sequence[MhTarget], assigned_at_ms: int) -> str:
    """The value stored at `meeting:{<id>}:mh`: the ranked MH list and when it was assigned.

    Compact JSON (no spaces, ASCII only), keys in a fixed order, `mhs` in the given order:
    `{"assigned_at_ms":N,"mhs":[{"mh_id":..,"endpoint":..,"role":"primary"},..]}`.
    """
    document = {
        "assigned_at_ms": assigned_at_ms,
        "mhs": [{"mh_id": m.mh_id, "endpoint": m.endpoint, "role": m.role.value} for m in mhs],
    }
    return json.dumps(document, separators=(",", ":"))
