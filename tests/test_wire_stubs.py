"""The committed stubs are exactly what `scripts/gen_proto.py` produces from the proto."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from darktower.wire.dark_tower import internal_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent


def _load_generator() -> object:
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_are_fresh(tmp_path: Path) -> None:
    gen = _load_generator()
    gen.generate(tmp_path)  # type: ignore[attr-defined]
    generated: list[str] = gen.GENERATED  # type: ignore[attr-defined]
    stale = [
        rel
        for rel in generated
        if (tmp_path / rel).read_bytes() != (ROOT / "src" / rel).read_bytes()
    ]
    assert not stale, f"stale generated stubs, run `python scripts/gen_proto.py`: {stale}"


@pytest.mark.parametrize(
    ("message", "field", "number"),
    [
        ("RegisterMCRequest", "webtransport_endpoint", 4),
        ("RegisterMCRequest", "max_participants", 6),
        ("ComprehensiveHeartbeatRequest", "memory_usage_percent", 5),
        ("AssignMeetingWithMhRequest", "requesting_gc_id", 3),
        ("MHLoadReportRequest", "bandwidth_usage_percent", 6),
        ("RegisterMeetingController", "capacity", 4),
        ("RegisterParticipant", "participant_id", 1),
        ("RegisterParticipant", "meeting_id", 2),
        ("RegisterParticipant", "streams", 3),
        ("RegisterParticipantResponse", "connection_token", 1),
        ("RegisterParticipantResponse", "media_handler_url", 2),
        ("RouteMediaCommand", "options", 5),
        ("MediaTelemetry", "timestamp", 8),
        ("TelemetryAck", "received", 1),
    ],
)
def test_field_numbers_match_the_spec(message: str, field: str, number: int) -> None:
    descriptor = pb.DESCRIPTOR.message_types_by_name[message]
    assert descriptor.fields_by_name[field].number == number


def test_package_and_services() -> None:
    assert pb.DESCRIPTOR.package == "dark_tower.internal"
    services = {name: set(s.methods_by_name) for name, s in pb.DESCRIPTOR.services_by_name.items()}
    assert services == {
        "GlobalControllerService": {
            "RegisterMC",
            "FastHeartbeat",
            "ComprehensiveHeartbeat",
            "NotifyMeetingEnded",
            "MigrateMeeting",
        },
        "MeetingControllerService": {
            "AssignMeetingWithMh",
            "RegisterController",
            "SendHeartbeat",
            "Assign",
            "DrainController",
            "EndMeeting",
            "RemoveParticipant",
            "MuteParticipant",
            "GetMeetingRoster",
        },
        "MediaHandlerRegistryService": {"RegisterMH", "SendLoadReport"},
        "MediaHandlerService": {
            "Register",
            "RouteMedia",
            "StreamTelemetry",
            "EndMeeting",
            "MuteParticipant",
        },
    }
    assert pb.HealthStatus.Value("DRAINING") == 4
    assert pb.RejectionReason.Value("REJECTION_REASON_UNHEALTHY") == 3
    assert pb.MhRole.Value("MH_ROLE_BACKUP") == 2


def test_the_signaling_package_of_the_original_protocol() -> None:
    from darktower.wire.dark_tower import signaling_pb2 as sig

    assert sig.DESCRIPTOR.package == "dark_tower.signaling"
    assert sig.StreamType.Value("VIDEO_SCREEN") == 2
    fields = sig.DESCRIPTOR.message_types_by_name["MediaStream"].fields_by_name
    assert {name: f.number for name, f in fields.items()} == {
        "stream_id": 1,
        "stream_type": 2,
        "metadata": 3,
    }
    streams = pb.DESCRIPTOR.message_types_by_name["RegisterParticipant"].fields_by_name["streams"]
    assert streams.message_type.full_name == "dark_tower.signaling.MediaStream"
    service = pb.DESCRIPTOR.services_by_name["MediaHandlerService"].methods_by_name
    assert service["StreamTelemetry"].client_streaming
