"""The GC's request validation, as tables at every boundary; each refusal names its field."""

from __future__ import annotations

import math
from typing import Any

import pytest

from darktower.gc.domain import Health
from darktower.gc.errors import GcError, InvalidGcRequest
from darktower.gc.validation import (
    MAX_COUNT,
    McHeartbeat,
    McRegistration,
    MeetingEnd,
    MhLoadReport,
    MhRegistration,
    validate_comprehensive_heartbeat,
    validate_fast_heartbeat,
    validate_load_report,
    validate_meeting_ended,
    validate_register_mc,
    validate_register_mh,
)
from darktower.wire.dark_tower import internal_pb2 as pb

ID_255 = "m" * 255
REGION_50 = "r" * 50
REGION_50_BYTES_UTF8 = "é" * 25  # 2 bytes each


def register_mc(**overrides: Any) -> pb.RegisterMCRequest:
    fields: dict[str, Any] = {
        "id": "mc-1",
        "region": "eu-west",
        "grpc_endpoint": "http://10.0.0.5:50052",
        "webtransport_endpoint": "https://mc-1.example:4433",
        "max_meetings": 1000,
        "max_participants": 10000,
    }
    fields.update(overrides)
    return pb.RegisterMCRequest(**fields)


def capacity(**overrides: int) -> pb.ControllerCapacity:
    fields = {
        "max_meetings": 100,
        "current_meetings": 3,
        "max_participants": 1000,
        "current_participants": 30,
    }
    fields.update(overrides)
    return pb.ControllerCapacity(**fields)


def fast(**overrides: Any) -> pb.FastHeartbeatRequest:
    fields: dict[str, Any] = {
        "controller_id": "mc-1",
        "capacity": capacity(),
        "health": pb.HEALTHY,
    }
    fields.update(overrides)
    return pb.FastHeartbeatRequest(**fields)


def comprehensive(**overrides: Any) -> pb.ComprehensiveHeartbeatRequest:
    fields: dict[str, Any] = {
        "controller_id": "mc-1",
        "capacity": capacity(),
        "health": pb.DEGRADED,
        "cpu_usage_percent": 12.5,
        "memory_usage_percent": 40.0,
    }
    fields.update(overrides)
    return pb.ComprehensiveHeartbeatRequest(**fields)


def register_mh(**overrides: Any) -> pb.RegisterMHRequest:
    fields: dict[str, Any] = {
        "handler_id": "mh-1",
        "region": "eu-west",
        "webtransport_endpoint": "https://mh-1.example:4433",
        "grpc_endpoint": "http://mh-1.example:50053",
        "max_streams": 500,
        "zone": "eu-west-1a",
    }
    fields.update(overrides)
    return pb.RegisterMHRequest(**fields)


def load_report(**overrides: Any) -> pb.MHLoadReportRequest:
    fields: dict[str, Any] = {
        "handler_id": "mh-1",
        "current_streams": 10,
        "health": pb.HEALTHY,
        "cpu_usage_percent": 0.0,
        "memory_usage_percent": 100.0,
        "bandwidth_usage_percent": 55.5,
    }
    fields.update(overrides)
    return pb.MHLoadReportRequest(**fields)


def refused(call: Any, request: Any) -> InvalidGcRequest:
    with pytest.raises(InvalidGcRequest) as info:
        call(request)
    error = info.value
    assert isinstance(error, GcError) and error.code == "invalid_argument"
    assert str(error) == f"{error.field}: {error.reason}"
    return error


# --- RegisterMC ----------------------------------------------------------------------------


def test_register_mc_converts_a_good_request() -> None:
    assert validate_register_mc(register_mc()) == McRegistration(
        id="mc-1",
        region="eu-west",
        grpc_endpoint="http://10.0.0.5:50052",
        webtransport_endpoint="https://mc-1.example:4433",
        max_meetings=1000,
        max_participants=10000,
    )


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"id": ID_255}, id="id-255-bytes"),
        pytest.param({"id": "A-z_09"}, id="id-charset"),
        pytest.param({"region": REGION_50}, id="region-50-bytes"),
        pytest.param({"region": REGION_50_BYTES_UTF8}, id="region-50-bytes-utf8"),
        pytest.param({"region": "us east"}, id="region-with-space"),
        pytest.param({"webtransport_endpoint": ""}, id="no-webtransport"),
        pytest.param({"grpc_endpoint": "http://localhost:50052"}, id="localhost"),
        pytest.param({"grpc_endpoint": "http://a"}, id="single-label-host"),
        pytest.param({"grpc_endpoint": "http://mc-1:50052"}, id="service-name"),
        pytest.param({"grpc_endpoint": "https://[::1]:50052"}, id="ipv6"),
        pytest.param({"grpc_endpoint": "http://h/" + "p" * 246}, id="endpoint-255-bytes"),
        pytest.param({"max_meetings": 1, "max_participants": 1}, id="capacity-1"),
        pytest.param({"max_meetings": MAX_COUNT}, id="capacity-max"),
    ],
)
def test_register_mc_accepts_boundaries(overrides: dict[str, Any]) -> None:
    registration = validate_register_mc(register_mc(**overrides))
    assert registration.id == overrides.get("id", "mc-1")


def test_register_mc_empty_webtransport_is_none() -> None:
    assert validate_register_mc(register_mc(webtransport_endpoint="")).webtransport_endpoint is None


BAD_URL = "must be an http:// or https:// URL with a host"
BAD_ID = "must be letters, digits, '-' or '_'"


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        pytest.param({"id": ""}, "id", "required", id="id-empty"),
        pytest.param({"id": "m" * 256}, "id", "must be at most 255 bytes", id="id-256-bytes"),
        pytest.param({"id": "mc/1"}, "id", BAD_ID, id="id-slash"),
        pytest.param({"id": "mc 1"}, "id", BAD_ID, id="id-space"),
        pytest.param({"id": "mc@1"}, "id", BAD_ID, id="id-at"),
        pytest.param({"id": "mc{1}"}, "id", BAD_ID, id="id-brace"),
        pytest.param({"id": "mç"}, "id", BAD_ID, id="id-non-ascii"),
        pytest.param({"region": ""}, "region", "required", id="region-empty"),
        pytest.param(
            {"region": "r" * 51}, "region", "must be at most 50 bytes", id="region-51-bytes"
        ),
        pytest.param(
            {"region": "é" * 25 + "x"}, "region", "must be at most 50 bytes", id="region-51-utf8"
        ),
        pytest.param(
            {"region": "eu\x00"},
            "region",
            "must not contain control characters",
            id="region-nul",
        ),
        pytest.param(
            {"region": "eu\nwest"},
            "region",
            "must not contain control characters",
            id="region-newline",
        ),
        pytest.param({"grpc_endpoint": ""}, "grpc_endpoint", "required", id="grpc-empty"),
        pytest.param({"grpc_endpoint": "ftp://x"}, "grpc_endpoint", BAD_URL, id="grpc-ftp"),
        pytest.param({"grpc_endpoint": "http://"}, "grpc_endpoint", BAD_URL, id="grpc-no-host"),
        pytest.param({"grpc_endpoint": "mc-1:50052"}, "grpc_endpoint", BAD_URL, id="grpc-bare"),
        pytest.param(
            {"grpc_endpoint": "http://h:99999"}, "grpc_endpoint", BAD_URL, id="grpc-bad-port"
        ),
        pytest.param(
            {"grpc_endpoint": "http://u:pw@h"},
            "grpc_endpoint",
            "must not contain user info",
            id="grpc-userinfo",
        ),
        pytest.param(
            {"grpc_endpoint": "http://h/" + "p" * 247},
            "grpc_endpoint",
            "must be at most 255 bytes",
            id="grpc-256-bytes",
        ),
        pytest.param(
            {"webtransport_endpoint": "ftp://x"},
            "webtransport_endpoint",
            BAD_URL,
            id="webtransport-ftp",
        ),
        pytest.param(
            {"webtransport_endpoint": "https://"},
            "webtransport_endpoint",
            BAD_URL,
            id="webtransport-no-host",
        ),
        pytest.param(
            {"max_meetings": 0},
            "max_meetings",
            f"must be between 1 and {MAX_COUNT}",
            id="max-meetings-0",
        ),
        pytest.param(
            {"max_meetings": MAX_COUNT + 1},
            "max_meetings",
            f"must be between 1 and {MAX_COUNT}",
            id="max-meetings-over-int32",
        ),
        pytest.param(
            {"max_participants": 0},
            "max_participants",
            f"must be between 1 and {MAX_COUNT}",
            id="max-participants-0",
        ),
    ],
)
def test_register_mc_refusals(overrides: dict[str, Any], field: str, reason: str) -> None:
    error = refused(validate_register_mc, register_mc(**overrides))
    assert (error.field, error.reason) == (field, reason)


def test_register_mc_reports_the_first_bad_field() -> None:
    error = refused(validate_register_mc, register_mc(id="", region="", max_meetings=0))
    assert error.field == "id"


# --- heartbeats ----------------------------------------------------------------------------


def test_fast_heartbeat_converts_a_good_request() -> None:
    assert validate_fast_heartbeat(fast()) == McHeartbeat(
        controller_id="mc-1",
        max_meetings=100,
        current_meetings=3,
        max_participants=1000,
        current_participants=30,
        health=Health.HEALTHY,
    )


def test_comprehensive_heartbeat_carries_usage() -> None:
    beat = validate_comprehensive_heartbeat(comprehensive())
    assert (beat.health, beat.cpu_percent, beat.memory_percent) == (Health.DEGRADED, 12.5, 40.0)
    assert beat.current_participants == 30


@pytest.mark.parametrize(
    ("number", "health"),
    [
        (pb.PENDING, Health.PENDING),
        (pb.HEALTHY, Health.HEALTHY),
        (pb.DEGRADED, Health.DEGRADED),
        (pb.UNHEALTHY, Health.UNHEALTHY),
        (pb.DRAINING, Health.DRAINING),
    ],
)
def test_every_defined_health_maps(number: pb.HealthStatus.ValueType, health: Health) -> None:
    assert validate_fast_heartbeat(fast(health=number)).health is health


@pytest.mark.parametrize(
    "beat",
    [
        pytest.param(capacity(current_meetings=0, current_participants=0), id="idle"),
        pytest.param(capacity(current_meetings=MAX_COUNT), id="count-at-bound"),
        pytest.param(capacity(max_meetings=1, current_meetings=5), id="over-its-maximum"),
    ],
)
def test_heartbeat_accepts_count_boundaries(beat: pb.ControllerCapacity) -> None:
    assert validate_fast_heartbeat(fast(capacity=beat)).current_meetings == beat.current_meetings


HeartbeatCase = tuple[Any, str, str]
BAD_PERCENT = "must be a finite number between 0 and 100"


@pytest.mark.parametrize("validate", [validate_fast_heartbeat, validate_comprehensive_heartbeat])
@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        pytest.param({"controller_id": ""}, "controller_id", "required", id="id-empty"),
        pytest.param(
            {"controller_id": "m" * 256},
            "controller_id",
            "must be at most 255 bytes",
            id="id-256",
        ),
        pytest.param({"controller_id": "mc/1"}, "controller_id", BAD_ID, id="id-slash"),
        pytest.param({"capacity": None}, "capacity", "required", id="capacity-missing"),
        pytest.param(
            {"capacity": capacity(max_meetings=0)},
            "capacity.max_meetings",
            f"must be between 1 and {MAX_COUNT}",
            id="max-meetings-0",
        ),
        pytest.param(
            {"capacity": capacity(max_participants=0)},
            "capacity.max_participants",
            f"must be between 1 and {MAX_COUNT}",
            id="max-participants-0",
        ),
        pytest.param(
            {"capacity": capacity(current_meetings=MAX_COUNT + 1)},
            "capacity.current_meetings",
            f"must be at most {MAX_COUNT}",
            id="current-meetings-over-int32",
        ),
        pytest.param(
            {"capacity": capacity(current_participants=2**32 - 1)},
            "capacity.current_participants",
            f"must be at most {MAX_COUNT}",
            id="current-participants-uint32-max",
        ),
        pytest.param({"health": 5}, "health", "must be a defined HealthStatus", id="health-5"),
        pytest.param({"health": 99}, "health", "must be a defined HealthStatus", id="health-99"),
    ],
)
def test_heartbeat_refusals(
    validate: Any, overrides: dict[str, Any], field: str, reason: str
) -> None:
    make = fast if validate is validate_fast_heartbeat else comprehensive
    request = make(**{k: v for k, v in overrides.items() if v is not None})
    if "capacity" in overrides and overrides["capacity"] is None:
        request.ClearField("capacity")
    error = refused(validate, request)
    assert (error.field, error.reason) == (field, reason)


def test_an_empty_capacity_message_is_present_and_refused_for_its_zero_maximum() -> None:
    # Set but empty is not missing: its zero max_meetings is what is wrong.
    request = fast(capacity=pb.ControllerCapacity())
    assert request.HasField("capacity")
    assert refused(validate_fast_heartbeat, request).field == "capacity.max_meetings"


@pytest.mark.parametrize("value", [0.0, 0.001, 50.0, 99.999, 100.0])
@pytest.mark.parametrize("field", ["cpu_usage_percent", "memory_usage_percent"])
def test_comprehensive_heartbeat_accepts_percents(field: str, value: float) -> None:
    beat = validate_comprehensive_heartbeat(comprehensive(**{field: value}))
    got = beat.cpu_percent if field == "cpu_usage_percent" else beat.memory_percent
    assert got == pytest.approx(value, abs=1e-4)


BAD_PERCENTS = [
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="inf"),
    pytest.param(-math.inf, id="-inf"),
    pytest.param(-0.5, id="negative"),
    pytest.param(100.01, id="100.01"),
    pytest.param(101.0, id="101"),
]


@pytest.mark.parametrize("value", BAD_PERCENTS)
@pytest.mark.parametrize("field", ["cpu_usage_percent", "memory_usage_percent"])
def test_comprehensive_heartbeat_refuses_percents(field: str, value: float) -> None:
    error = refused(validate_comprehensive_heartbeat, comprehensive(**{field: value}))
    assert (error.field, error.reason) == (field, BAD_PERCENT)


# --- NotifyMeetingEnded --------------------------------------------------------------------


def test_meeting_ended_converts_a_good_request() -> None:
    request = pb.NotifyMeetingEndedRequest(meeting_id=ID_255, region=REGION_50)
    assert validate_meeting_ended(request) == MeetingEnd(meeting_id=ID_255, region=REGION_50)


@pytest.mark.parametrize(
    ("meeting_id", "region", "field", "reason"),
    [
        pytest.param("", "eu", "meeting_id", "required", id="id-empty"),
        pytest.param("m" * 256, "eu", "meeting_id", "must be at most 255 bytes", id="id-256-bytes"),
        pytest.param("a/b", "eu", "meeting_id", BAD_ID, id="id-slash"),
        pytest.param("a b", "eu", "meeting_id", BAD_ID, id="id-space"),
        pytest.param("a@b", "eu", "meeting_id", BAD_ID, id="id-at"),
        pytest.param("standup", "", "region", "required", id="region-empty"),
        pytest.param(
            "standup", "r" * 51, "region", "must be at most 50 bytes", id="region-51-bytes"
        ),
    ],
)
def test_meeting_ended_refusals(meeting_id: str, region: str, field: str, reason: str) -> None:
    request = pb.NotifyMeetingEndedRequest(meeting_id=meeting_id, region=region)
    error = refused(validate_meeting_ended, request)
    assert (error.field, error.reason) == (field, reason)


# --- RegisterMH ----------------------------------------------------------------------------


def test_register_mh_converts_a_good_request() -> None:
    assert validate_register_mh(register_mh()) == MhRegistration(
        id="mh-1",
        region="eu-west",
        webtransport_endpoint="https://mh-1.example:4433",
        grpc_endpoint="http://mh-1.example:50053",
        max_streams=500,
        zone="eu-west-1a",
    )


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        pytest.param("", None, id="empty-is-none"),
        pytest.param("z" * 50, "z" * 50, id="50-bytes"),
        pytest.param("a_Z-9", "a_Z-9", id="charset"),
    ],
)
def test_register_mh_zone(zone: str, expected: str | None) -> None:
    assert validate_register_mh(register_mh(zone=zone)).zone == expected


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        pytest.param({"handler_id": ""}, "handler_id", "required", id="id-empty"),
        pytest.param(
            {"handler_id": "h" * 256}, "handler_id", "must be at most 255 bytes", id="id-256"
        ),
        pytest.param({"handler_id": "mh@1"}, "handler_id", BAD_ID, id="id-at"),
        pytest.param({"region": ""}, "region", "required", id="region-empty"),
        pytest.param(
            {"region": "r" * 51}, "region", "must be at most 50 bytes", id="region-51-bytes"
        ),
        pytest.param(
            {"webtransport_endpoint": ""},
            "webtransport_endpoint",
            "required",
            id="webtransport-empty",
        ),
        pytest.param(
            {"webtransport_endpoint": "ftp://x"},
            "webtransport_endpoint",
            BAD_URL,
            id="webtransport-ftp",
        ),
        pytest.param({"grpc_endpoint": ""}, "grpc_endpoint", "required", id="grpc-empty"),
        pytest.param({"grpc_endpoint": "ftp://x"}, "grpc_endpoint", BAD_URL, id="grpc-ftp"),
        pytest.param(
            {"max_streams": 0},
            "max_streams",
            f"must be between 1 and {MAX_COUNT}",
            id="max-streams-0",
        ),
        pytest.param({"zone": "z" * 51}, "zone", "must be at most 50 bytes", id="zone-51-bytes"),
        pytest.param({"zone": "eu west"}, "zone", BAD_ID, id="zone-space"),
        pytest.param({"zone": "eu/1a"}, "zone", BAD_ID, id="zone-slash"),
    ],
)
def test_register_mh_refusals(overrides: dict[str, Any], field: str, reason: str) -> None:
    error = refused(validate_register_mh, register_mh(**overrides))
    assert (error.field, error.reason) == (field, reason)


# --- MH load reports -----------------------------------------------------------------------


def test_load_report_converts_a_good_request() -> None:
    assert validate_load_report(load_report()) == MhLoadReport(
        handler_id="mh-1",
        current_streams=10,
        health=Health.HEALTHY,
        cpu_percent=0.0,
        memory_percent=100.0,
        bandwidth_percent=pytest.approx(55.5),
    )


def test_load_report_does_not_compare_streams_with_a_maximum() -> None:
    assert validate_load_report(load_report(current_streams=MAX_COUNT)).current_streams == MAX_COUNT


PERCENT_FIELDS = ["cpu_usage_percent", "memory_usage_percent", "bandwidth_usage_percent"]


@pytest.mark.parametrize("value", BAD_PERCENTS)
@pytest.mark.parametrize("field", PERCENT_FIELDS)
def test_load_report_refuses_percents(field: str, value: float) -> None:
    error = refused(validate_load_report, load_report(**{field: value}))
    assert (error.field, error.reason) == (field, BAD_PERCENT)


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        pytest.param({"handler_id": ""}, "handler_id", "required", id="id-empty"),
        pytest.param({"handler_id": "mh 1"}, "handler_id", BAD_ID, id="id-space"),
        pytest.param(
            {"current_streams": MAX_COUNT + 1},
            "current_streams",
            f"must be at most {MAX_COUNT}",
            id="streams-over-int32",
        ),
        pytest.param({"health": 7}, "health", "must be a defined HealthStatus", id="health-7"),
    ],
)
def test_load_report_refusals(overrides: dict[str, Any], field: str, reason: str) -> None:
    error = refused(validate_load_report, load_report(**overrides))
    assert (error.field, error.reason) == (field, reason)
