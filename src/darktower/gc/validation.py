"""Validation of the GC's gRPC requests (docs/reference.md) and their conversion to domain values.

Pure functions: a protobuf request in, a frozen domain value out, or `InvalidGcRequest` naming
the first bad field (`capacity.max_meetings`, `cpu_usage_percent`, ...). Checked in the order
of the message's fields.

The rules:

* ids (`id`, `controller_id`, `handler_id`, `meeting_id`): 1 to 255 UTF-8 bytes of letters,
  digits, `-`, `_` — the shared rule (`darktower.common.ids`), so an id valid on one side is
  valid on the other;
* `region`: 1 to 50 UTF-8 bytes (the column width) without control characters (PostgreSQL
  refuses NUL in text, and regions are logged); `zone`: optional, at most 50 bytes, id charset;
* endpoints: the shared endpoint rule (`darktower.common.endpoints`) — an `http://` or
  `https://` URL with a host, a valid port if any, no user info, no whitespace, at most 255
  bytes. A single-label host (`http://a`, `http://mc-1:50052`) is valid on purpose: container
  and Kubernetes service names are single-label, and an MC that binds a wildcard advertises
  `socket.getfqdn()`, which inside a container is often the bare hostname. Refusing them would
  keep such MCs out for good;
* capacities (`max_*`): 1 to `MAX_COUNT`; current counts: 0 to `MAX_COUNT` — `MAX_COUNT` is
  the largest value the store's INTEGER columns hold, a uint32 above it is refused here rather
  than failing in the database. A current count above its maximum is not refused: it is what
  the reporter sees, and placement treats it as full;
* `health`: a number `HealthStatus` defines (PENDING included: it is the proto default);
* percents: finite and within [0, 100]; NaN, ±inf and anything outside are refused, not
  clamped — a reporter that sends them is broken, and a clamped value would hide it;
* a heartbeat without `capacity` is refused (`capacity: required`): zero counts from a
  forgotten field would look like an empty MC;
* `meetings` (comprehensive heartbeats only): at most `MAX_MEETING_LOADS` entries, each
  `meeting_id` by the id rule (field `meetings[i].meeting_id`), `participants` at most
  `MAX_COUNT`, no meeting twice (`meetings[i].meeting_id: duplicate`) — a reporter that
  repeats one is broken, and either count could be the wrong one.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from darktower.common import endpoints, ids
from darktower.common.errors import InvalidField, invalid_field_as
from darktower.common.limits import MAX_MEETING_LOADS
from darktower.gc.domain import Health
from darktower.gc.errors import InvalidGcRequest
from darktower.wire.dark_tower import internal_pb2 as pb

__all__ = [
    "HEALTH_FROM_PROTO",
    "MAX_COUNT",
    "MAX_REGION_BYTES",
    "McHeartbeat",
    "McRegistration",
    "MeetingEnd",
    "MhLoadReport",
    "MhRegistration",
    "validate_comprehensive_heartbeat",
    "validate_endpoint",
    "validate_fast_heartbeat",
    "validate_id",
    "validate_load_report",
    "validate_meeting_ended",
    "validate_region",
    "validate_register_mc",
    "validate_register_mh",
]

MAX_REGION_BYTES = 50
MAX_COUNT = 2**31 - 1
"""The largest count or capacity accepted: what a signed 32-bit INTEGER column holds."""

HEALTH_FROM_PROTO: dict[int, Health] = {
    pb.PENDING: Health.PENDING,
    pb.HEALTHY: Health.HEALTHY,
    pb.DEGRADED: Health.DEGRADED,
    pb.UNHEALTHY: Health.UNHEALTHY,
    pb.DRAINING: Health.DRAINING,
}


@dataclass(frozen=True, slots=True)
class McRegistration:
    """A validated `RegisterMCRequest`; an empty webtransport endpoint is None."""

    id: str
    region: str
    grpc_endpoint: str
    webtransport_endpoint: str | None
    max_meetings: int
    max_participants: int


@dataclass(frozen=True, slots=True)
class McHeartbeat:
    """A validated fast or comprehensive heartbeat; a fast one has no cpu/memory and no
    per-meeting participants (None: nothing to update)."""

    controller_id: str
    max_meetings: int
    current_meetings: int
    max_participants: int
    current_participants: int
    health: Health
    cpu_percent: float | None = None
    memory_percent: float | None = None
    # meeting id → participants, every meeting the MC hosts (comprehensive beats only).
    meeting_loads: Mapping[str, int] | None = None


@dataclass(frozen=True, slots=True)
class MeetingEnd:
    """A validated `NotifyMeetingEndedRequest`."""

    meeting_id: str
    region: str


@dataclass(frozen=True, slots=True)
class MhRegistration:
    """A validated `RegisterMHRequest`; an empty zone is None."""

    id: str
    region: str
    webtransport_endpoint: str
    grpc_endpoint: str
    max_streams: int
    zone: str | None


@dataclass(frozen=True, slots=True)
class MhLoadReport:
    """A validated `MHLoadReportRequest`."""

    handler_id: str
    current_streams: int
    health: Health
    cpu_percent: float
    memory_percent: float
    bandwidth_percent: float


# --- single fields -------------------------------------------------------------------------


def validate_id(value: str, field: str) -> str:
    """`value` if it is 1 to 255 UTF-8 bytes of letters, digits, `-`, `_`; else InvalidGcRequest."""
    # Every heartbeat checks ids (its MC's, each meeting of a comprehensive one): a try costs
    # nothing when it passes, a context manager a generator each time.
    try:
        return ids.validate_id(value, field)
    except InvalidField as exc:
        raise InvalidGcRequest(exc.field, exc.reason) from exc


def validate_endpoint(value: str, field: str) -> str:
    """`value` if it is a usable `http(s)://` endpoint (see the module docstring)."""
    with invalid_field_as(InvalidGcRequest):
        return endpoints.validate_endpoint(value, field)


def _validate_short(value: str, field: str) -> None:
    if len(value.encode("utf-8")) > MAX_REGION_BYTES:
        raise InvalidGcRequest(field, f"must be at most {MAX_REGION_BYTES} bytes")


def validate_region(value: str, field: str = "region") -> str:
    """`value` if it is 1 to 50 UTF-8 bytes without control characters; else InvalidGcRequest."""
    if not value:
        raise InvalidGcRequest(field, "required")
    _validate_short(value, field)
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise InvalidGcRequest(field, "must not contain control characters")
    return value


def _validate_zone(value: str, field: str = "zone") -> str | None:
    if not value:
        return None
    _validate_short(value, field)
    return validate_id(value, field)


def _validate_capacity(value: int, field: str) -> int:
    if not 0 < value <= MAX_COUNT:
        raise InvalidGcRequest(field, f"must be between 1 and {MAX_COUNT}")
    return value


def _validate_count(value: int, field: str) -> int:
    if value > MAX_COUNT:
        raise InvalidGcRequest(field, f"must be at most {MAX_COUNT}")
    return value


def _validate_percent(value: float, field: str) -> float:
    if not math.isfinite(value) or not 0.0 <= value <= 100.0:
        raise InvalidGcRequest(field, "must be a finite number between 0 and 100")
    return value


def _validate_health(value: int, field: str = "health") -> Health:
    try:
        return HEALTH_FROM_PROTO[value]
    except KeyError:
        raise InvalidGcRequest(field, "must be a defined HealthStatus") from None


# --- requests ------------------------------------------------------------------------------


def validate_register_mc(request: pb.RegisterMCRequest) -> McRegistration:
    """Check `id`, `region`, `grpc_endpoint`, `webtransport_endpoint` (may be empty),
    `max_meetings`, `max_participants`, in that order."""
    controller_id = validate_id(request.id, "id")
    region = validate_region(request.region)
    grpc_endpoint = validate_endpoint(request.grpc_endpoint, "grpc_endpoint")
    webtransport = request.webtransport_endpoint
    if webtransport:
        validate_endpoint(webtransport, "webtransport_endpoint")
    return McRegistration(
        id=controller_id,
        region=region,
        grpc_endpoint=grpc_endpoint,
        webtransport_endpoint=webtransport or None,
        max_meetings=_validate_capacity(request.max_meetings, "max_meetings"),
        max_participants=_validate_capacity(request.max_participants, "max_participants"),
    )


def _heartbeat(
    request: pb.FastHeartbeatRequest | pb.ComprehensiveHeartbeatRequest,
) -> McHeartbeat:
    controller_id = validate_id(request.controller_id, "controller_id")
    if not request.HasField("capacity"):
        raise InvalidGcRequest("capacity", "required")
    capacity = request.capacity
    return McHeartbeat(
        controller_id=controller_id,
        max_meetings=_validate_capacity(capacity.max_meetings, "capacity.max_meetings"),
        current_meetings=_validate_count(capacity.current_meetings, "capacity.current_meetings"),
        max_participants=_validate_capacity(capacity.max_participants, "capacity.max_participants"),
        current_participants=_validate_count(
            capacity.current_participants, "capacity.current_participants"
        ),
        health=_validate_health(request.health),
    )


def validate_fast_heartbeat(request: pb.FastHeartbeatRequest) -> McHeartbeat:
    """Check `controller_id`, `capacity` (required; each of its fields), `health`."""
    return _heartbeat(request)


def _validate_meeting_loads(loads: Sequence[pb.MeetingLoad]) -> Mapping[str, int]:
    if len(loads) > MAX_MEETING_LOADS:
        raise InvalidGcRequest("meetings", f"must have at most {MAX_MEETING_LOADS} entries")
    result: dict[str, int] = {}
    for i, load in enumerate(loads):
        meeting_id = validate_id(load.meeting_id, f"meetings[{i}].meeting_id")
        if meeting_id in result:
            raise InvalidGcRequest(f"meetings[{i}].meeting_id", "duplicate")
        result[meeting_id] = _validate_count(load.participants, f"meetings[{i}].participants")
    return result


def validate_comprehensive_heartbeat(request: pb.ComprehensiveHeartbeatRequest) -> McHeartbeat:
    """As `validate_fast_heartbeat`, then `cpu_usage_percent`, `memory_usage_percent`,
    `meetings`."""
    return replace(
        _heartbeat(request),
        cpu_percent=_validate_percent(request.cpu_usage_percent, "cpu_usage_percent"),
        memory_percent=_validate_percent(request.memory_usage_percent, "memory_usage_percent"),
        meeting_loads=_validate_meeting_loads(request.meetings),
    )


def validate_meeting_ended(request: pb.NotifyMeetingEndedRequest) -> MeetingEnd:
    """Check `meeting_id` (the shared id rule), then `region`."""
    return MeetingEnd(
        meeting_id=validate_id(request.meeting_id, "meeting_id"),
        region=validate_region(request.region),
    )


def validate_register_mh(request: pb.RegisterMHRequest) -> MhRegistration:
    """Check `handler_id`, `region`, `webtransport_endpoint`, `grpc_endpoint` (both
    required), `max_streams`, `zone` (may be empty), in that order."""
    return MhRegistration(
        id=validate_id(request.handler_id, "handler_id"),
        region=validate_region(request.region),
        webtransport_endpoint=validate_endpoint(
            request.webtransport_endpoint, "webtransport_endpoint"
        ),
        grpc_endpoint=validate_endpoint(request.grpc_endpoint, "grpc_endpoint"),
        max_streams=_validate_capacity(request.max_streams, "max_streams"),
        zone=_validate_zone(request.zone),
    )


def validate_load_report(request: pb.MHLoadReportRequest) -> MhLoadReport:
    """Check `handler_id`, `current_streams`, `health` and the three percents, in order.

    `current_streams` is not compared with the MH's `max_streams`: the store holds that.
    """
    return MhLoadReport(
        handler_id=validate_id(request.handler_id, "handler_id"),
        current_streams=_validate_count(request.current_streams, "current_streams"),
        health=_validate_health(request.health),
        cpu_percent=_validate_percent(request.cpu_usage_percent, "cpu_usage_percent"),
        memory_percent=_validate_percent(request.memory_usage_percent, "memory_usage_percent"),
        bandwidth_percent=_validate_percent(
            request.bandwidth_usage_percent, "bandwidth_usage_percent"
        ),
    )
