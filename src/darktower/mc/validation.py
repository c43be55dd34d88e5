"""Validation of `AssignMeetingWithMh` requests and their conversion to domain objects.

Everything a request carries ends up in Redis keys, Redis values or logs, so the rules are
strict: ids follow the shared id rule (`darktower.common.ids`: `[A-Za-z0-9_-]`, at most 255
UTF-8 bytes; they go inside Redis hash tags, where a brace would move the key to another slot),
endpoints the shared endpoint rule (`darktower.common.endpoints`: plain `http(s)://` URLs). The
first problem found raises `InvalidMcRequest` naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from darktower.common.endpoints import validate_endpoint
from darktower.common.errors import InvalidField, invalid_field_as
from darktower.common.ids import validate_id
from darktower.common.meeting_settings import MeetingSettings, validate_settings
from darktower.mc.errors import InvalidMcRequest
from darktower.wire.dark_tower import internal_pb2 as pb

__all__ = [
    "MAX_MH_ASSIGNMENTS",
    "AssignRequest",
    "MhRole",
    "MhTarget",
    "mh_list_json",
    "settings_from_proto",
    "validate_assign",
]

MAX_MH_ASSIGNMENTS = 16


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
    # Where the MC calls MediaHandlerService (`grpc_endpoint` on the wire); "" from a GC that
    # does not send it: the MC registers no participants there.
    grpc_endpoint: str = ""


@dataclass(frozen=True, slots=True)
class AssignRequest:
    """A validated `AssignMeetingWithMhRequest`; `mhs` keeps the request's rank order."""

    meeting_id: str
    mhs: tuple[MhTarget, ...]
    requesting_gc_id: str
    # The meeting API's settings (`settings` on the wire); None when the request has none.
    settings: MeetingSettings | None = None


# MH assignments already found valid, by their wire fields: a GC names the same few MHs in
# assignment after assignment, so each is checked once, not on every call. Bounded: emptied
# when full (an MC hears of a few hundred MHs at most).
_VALID_MHS: dict[tuple[str, str, int, str], MhTarget] = {}
_VALID_MHS_MAX = 1024


def _validate_mh(assignment: pb.MhAssignment, index: int, seen: set[str]) -> MhTarget:
    mh_id = assignment.mh_id
    # `seen` holds valid ids only (validate_id answers its input): a duplicate is a valid id.
    if mh_id in seen:
        raise InvalidMcRequest(f"mh_assignments[{index}].mh_id", f"duplicate MH id {mh_id!r}")
    key = (mh_id, assignment.webtransport_endpoint, assignment.role, assignment.grpc_endpoint)
    known = _VALID_MHS.get(key)
    if known is None:
        known = _check_mh(assignment, index)
        if len(_VALID_MHS) >= _VALID_MHS_MAX:
            _VALID_MHS.clear()
        _VALID_MHS[key] = known
    seen.add(mh_id)
    return known


def _check_mh(assignment: pb.MhAssignment, index: int) -> MhTarget:
    """One assignment, checked field by field (whether its MH id is unique aside)."""
    prefix = f"mh_assignments[{index}]"
    mh_id = validate_id(assignment.mh_id, f"{prefix}.mh_id")
    endpoint = validate_endpoint(
        assignment.webtransport_endpoint, f"{prefix}.webtransport_endpoint"
    )
    try:
        role = MhRole.from_proto(assignment.role)
    except ValueError:
        raise InvalidMcRequest(f"{prefix}.role", "must be a defined MhRole") from None
    grpc_endpoint = assignment.grpc_endpoint
    if grpc_endpoint:
        validate_endpoint(grpc_endpoint, f"{prefix}.grpc_endpoint")
    return MhTarget(mh_id=mh_id, endpoint=endpoint, role=role, grpc_endpoint=grpc_endpoint)


def validate_assign(req: pb.AssignMeetingWithMhRequest) -> AssignRequest:
    """Convert `req` into an `AssignRequest` or raise `InvalidMcRequest` for its first problem.

    Checked in order: `meeting_id`; the list `mh_assignments` (1 to 16 entries); each entry
    in order (`mh_id`, no duplicate `mh_id`, `webtransport_endpoint`, `role`,
    `grpc_endpoint` when set); then
    `requesting_gc_id`, which may be empty; then `settings`, when present
    (`darktower.common.meeting_settings`).
    """
    with invalid_field_as(InvalidMcRequest):
        return _validate_assign(req)


def _validate_assign(req: pb.AssignMeetingWithMhRequest) -> AssignRequest:
    meeting_id = validate_id(req.meeting_id, "meeting_id")
    count = len(req.mh_assignments)
    if count == 0:
        raise InvalidMcRequest("mh_assignments", "at least one MH assignment is required")
    if count > MAX_MH_ASSIGNMENTS:
        raise InvalidMcRequest(
            "mh_assignments", f"at most {MAX_MH_ASSIGNMENTS} MH assignments are allowed"
        )
    seen: set[str] = set()
    mhs = tuple(_validate_mh(a, i, seen) for i, a in enumerate(req.mh_assignments))
    gc_id = req.requesting_gc_id
    if gc_id:
        validate_id(gc_id, "requesting_gc_id")
    settings = settings_from_proto(req.settings) if req.HasField("settings") else None
    return AssignRequest(meeting_id=meeting_id, mhs=mhs, requesting_gc_id=gc_id, settings=settings)


def settings_from_proto(settings: pb.MeetingSettings) -> MeetingSettings:
    """The wire's settings (0 / empty = the default), checked by the shared rule; fields are
    named `settings.<field>` in the InvalidField."""
    try:
        return validate_settings(
            settings.max_participants or None,
            settings.empty_timeout_seconds or None,
            settings.metadata or None,
        )
    except InvalidField as exc:
        raise InvalidField(f"settings.{exc.field}", exc.reason) from None


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
