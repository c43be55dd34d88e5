"""Validation of `AssignMeetingWithMh` requests, rule by rule at each boundary."""

from __future__ import annotations

from typing import Any

import pytest

from darktower.mc.errors import InvalidMcRequest, McError
from darktower.mc.validation import (
    MAX_MH_ASSIGNMENTS,
    AssignRequest,
    MhRole,
    MhTarget,
    mh_list_json,
    validate_assign,
)
from darktower.wire.dark_tower import internal_pb2 as pb

GOOD_ENDPOINT = "https://mh-1.example:4433/path"
LONGEST_ID = "a" * 255


def mh(
    mh_id: str = "mh-1", endpoint: str = GOOD_ENDPOINT, role: int = pb.MH_ROLE_PRIMARY
) -> pb.MhAssignment:
    return pb.MhAssignment(
        mh_id=mh_id, webtransport_endpoint=endpoint, role=pb.MhRole.ValueType(role)
    )


def mhs(n: int) -> list[pb.MhAssignment]:
    return [mh(f"mh-{i}") for i in range(n)]


def request(**overrides: Any) -> pb.AssignMeetingWithMhRequest:
    fields: dict[str, Any] = {
        "meeting_id": "meeting-1",
        "mh_assignments": [mh("mh-1"), mh("mh-2", role=pb.MH_ROLE_BACKUP)],
        "requesting_gc_id": "gc-1",
    }
    fields.update(overrides)
    return pb.AssignMeetingWithMhRequest(**fields)


def test_valid_request_converts_in_rank_order() -> None:
    got = validate_assign(request())
    assert got == AssignRequest(
        meeting_id="meeting-1",
        mhs=(
            MhTarget("mh-1", GOOD_ENDPOINT, MhRole.PRIMARY),
            MhTarget("mh-2", GOOD_ENDPOINT, MhRole.BACKUP),
        ),
        requesting_gc_id="gc-1",
    )


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("m", id="one-char"),
        pytest.param(LONGEST_ID, id="255-bytes"),
        pytest.param("Meeting_01-x", id="mixed"),
    ],
)
def test_meeting_id_accepted(value: str) -> None:
    assert validate_assign(request(meeting_id=value)).meeting_id == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("", "required", id="empty"),
        pytest.param("a" * 256, "must be at most 255 bytes", id="256-bytes"),
        pytest.param("a" * 254 + "é", "must be at most 255 bytes", id="2-byte-char-over"),
        pytest.param("a/b", "must be letters, digits, '-' or '_'", id="slash"),
        pytest.param("a b", "must be letters, digits, '-' or '_'", id="space"),
        pytest.param("a@b", "must be letters, digits, '-' or '_'", id="at"),
        pytest.param("a{b", "must be letters, digits, '-' or '_'", id="open-brace"),
        pytest.param("a}b", "must be letters, digits, '-' or '_'", id="close-brace"),
        pytest.param("{m}", "must be letters, digits, '-' or '_'", id="hash-tag"),
        pytest.param("a\n", "must be letters, digits, '-' or '_'", id="trailing-newline"),
        pytest.param("é", "must be letters, digits, '-' or '_'", id="non-ascii"),
    ],
)
def test_meeting_id_rejected(value: str, reason: str) -> None:
    with pytest.raises(InvalidMcRequest) as info:
        validate_assign(request(meeting_id=value))
    assert info.value.field == "meeting_id"
    assert info.value.reason == reason
    assert str(info.value) == f"meeting_id: {reason}"
    assert info.value.code == "invalid_argument"
    assert isinstance(info.value, McError)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(GOOD_ENDPOINT, id="https-port-path"),
        pytest.param("http://mh", id="http-bare-host"),
        pytest.param("https://10.0.0.1:4433", id="ipv4"),
        pytest.param("https://[::1]:4433/", id="ipv6"),
        pytest.param("https://h/" + "p" * 245, id="255-bytes"),
    ],
)
def test_endpoint_accepted(value: str) -> None:
    assert validate_assign(request(mh_assignments=[mh(endpoint=value)])).mhs[0].endpoint == value


BAD_URL = "must be an http:// or https:// URL with a host"
TOO_LONG = "must be at most 255 bytes"
BAD_CHAR = "must not contain whitespace or control characters"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("", "required", id="empty"),
        pytest.param("ftp://x", BAD_URL, id="ftp"),
        pytest.param("http://", BAD_URL, id="no-host"),
        pytest.param("https://:4433/", BAD_URL, id="port-no-host"),
        pytest.param("https://a b", BAD_CHAR, id="space"),
        pytest.param("https://a\tb", BAD_CHAR, id="tab"),
        pytest.param("https://a\x7fb", BAD_CHAR, id="del"),
        pytest.param("https://a\x00", BAD_CHAR, id="nul"),
        pytest.param("mh.example", BAD_URL, id="no-scheme"),
        pytest.param("//mh.example", BAD_URL, id="scheme-relative"),
        pytest.param("https://mh:99999", BAD_URL, id="port-out-of-range"),
        pytest.param("https://mh:port", BAD_URL, id="port-not-number"),
        pytest.param("https://user:secret@mh", "must not contain user info", id="credentials"),
        pytest.param("https://h/" + "p" * 246, TOO_LONG, id="256-bytes"),
        pytest.param("https://h/" + "p" * 244 + "é", TOO_LONG, id="2-byte-char-over"),
    ],
)
def test_endpoint_rejected(value: str, reason: str) -> None:
    field = "mh_assignments[0].webtransport_endpoint"
    with pytest.raises(InvalidMcRequest) as info:
        validate_assign(request(mh_assignments=[mh(endpoint=value)]))
    assert (info.value.field, info.value.reason) == (field, reason)
    assert str(info.value) == f"{field}: {reason}"


@pytest.mark.parametrize(
    ("assignments", "field", "reason"),
    [
        pytest.param([], "mh_assignments", "at least one MH assignment is required", id="none"),
        pytest.param(
            mhs(MAX_MH_ASSIGNMENTS + 1),
            "mh_assignments",
            "at most 16 MH assignments are allowed",
            id="17",
        ),
        pytest.param([mh("")], "mh_assignments[0].mh_id", "required", id="mh-id-empty"),
        pytest.param(
            [mh("ok"), mh("a/b")],
            "mh_assignments[1].mh_id",
            "must be letters, digits, '-' or '_'",
            id="mh-id-slash",
        ),
        pytest.param(
            [*mhs(3), mh("{x}")],
            "mh_assignments[3].mh_id",
            "must be letters, digits, '-' or '_'",
            id="mh-id-brace",
        ),
        pytest.param(
            [mh("a" * 256)],
            "mh_assignments[0].mh_id",
            "must be at most 255 bytes",
            id="mh-id-256-bytes",
        ),
        pytest.param(
            [mh("a"), mh("b"), mh("a")],
            "mh_assignments[2].mh_id",
            "duplicate MH id 'a'",
            id="mh-id-duplicate",
        ),
        pytest.param(
            [mh(role=3)], "mh_assignments[0].role", "must be a defined MhRole", id="role-3"
        ),
        pytest.param(
            [mh("a"), mh("b", role=-1)],
            "mh_assignments[1].role",
            "must be a defined MhRole",
            id="role-negative",
        ),
        pytest.param(
            [mh("a", endpoint="ftp://x", role=9)],
            "mh_assignments[0].webtransport_endpoint",
            "must be an http:// or https:// URL with a host",
            id="endpoint-before-role",
        ),
        pytest.param(
            [mh("a/b", endpoint="ftp://x")],
            "mh_assignments[0].mh_id",
            "must be letters, digits, '-' or '_'",
            id="mh-id-before-endpoint",
        ),
        pytest.param(
            [mh("a", endpoint="ftp://x"), mh("b/")],
            "mh_assignments[0].webtransport_endpoint",
            "must be an http:// or https:// URL with a host",
            id="first-entry-first",
        ),
    ],
)
def test_mh_assignments_rejected(
    assignments: list[pb.MhAssignment], field: str, reason: str
) -> None:
    with pytest.raises(InvalidMcRequest) as info:
        validate_assign(request(mh_assignments=assignments))
    assert (info.value.field, info.value.reason) == (field, reason)


def test_mh_assignments_checked_once_are_still_checked_per_request() -> None:
    """A GC repeats its MHs: the second time they come from the MC's cache of valid ones,
    and the rules that depend on the request (duplicates, the other fields) still apply."""
    first = validate_assign(request())
    assert validate_assign(request()) == first
    with pytest.raises(InvalidMcRequest) as info:
        validate_assign(request(mh_assignments=[mh("mh-1"), mh("mh-1")]))
    assert (info.value.field, info.value.reason) == (
        "mh_assignments[1].mh_id",
        "duplicate MH id 'mh-1'",
    )
    # The same MH with another endpoint or role is another entry, checked anew.
    with pytest.raises(InvalidMcRequest) as info:
        validate_assign(request(mh_assignments=[mh("mh-1", endpoint="ftp://x")]))
    assert info.value.field == "mh_assignments[0].webtransport_endpoint"
    with pytest.raises(InvalidMcRequest) as info:
        validate_assign(request(mh_assignments=[mh("mh-1", role=9)]))
    assert info.value.field == "mh_assignments[0].role"


@pytest.mark.parametrize(
    ("assignments", "roles"),
    [
        pytest.param(mhs(1), (MhRole.PRIMARY,), id="one"),
        pytest.param(mhs(MAX_MH_ASSIGNMENTS), (MhRole.PRIMARY,) * 16, id="16"),
        pytest.param(
            [mh("a", role=pb.MH_ROLE_UNSPECIFIED)], (MhRole.UNSPECIFIED,), id="role-unspecified"
        ),
        pytest.param([mh("a" * 255)], (MhRole.PRIMARY,), id="mh-id-255-bytes"),
    ],
)
def test_mh_assignments_accepted(
    assignments: list[pb.MhAssignment], roles: tuple[MhRole, ...]
) -> None:
    got = validate_assign(request(mh_assignments=assignments))
    assert tuple(t.role for t in got.mhs) == roles
    assert [t.mh_id for t in got.mhs] == [a.mh_id for a in assignments]


@pytest.mark.parametrize(
    ("gc_id", "reason"),
    [
        pytest.param("", None, id="empty-allowed"),
        pytest.param(LONGEST_ID, None, id="255-bytes"),
        pytest.param("a" * 256, "must be at most 255 bytes", id="256-bytes"),
        pytest.param("a" * 254 + "é", "must be at most 255 bytes", id="2-byte-char-over"),
        pytest.param("gc 1", "must be letters, digits, '-' or '_'", id="space"),
        pytest.param("gc}", "must be letters, digits, '-' or '_'", id="brace"),
    ],
)
def test_requesting_gc_id(gc_id: str, reason: str | None) -> None:
    if reason is None:
        assert validate_assign(request(requesting_gc_id=gc_id)).requesting_gc_id == gc_id
        return
    with pytest.raises(InvalidMcRequest) as info:
        validate_assign(request(requesting_gc_id=gc_id))
    assert (info.value.field, info.value.reason) == ("requesting_gc_id", reason)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        pytest.param(
            {"meeting_id": "", "mh_assignments": [], "requesting_gc_id": "{"},
            "meeting_id",
            id="meeting-id-first",
        ),
        pytest.param(
            {"mh_assignments": [], "requesting_gc_id": "{"}, "mh_assignments", id="list-second"
        ),
        pytest.param(
            {"mh_assignments": [mh("{")], "requesting_gc_id": "{"},
            "mh_assignments[0].mh_id",
            id="entries-before-gc-id",
        ),
    ],
)
def test_first_problem_is_reported(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidMcRequest) as info:
        validate_assign(request(**overrides))
    assert info.value.field == field


@pytest.mark.parametrize("role", list(MhRole), ids=str)
def test_mh_role_round_trips(role: MhRole) -> None:
    assert MhRole.from_proto(role.to_proto()) is role
    assert pb.MhRole.Name(role.to_proto()) == f"MH_ROLE_{role.name}"


def test_mh_list_json_is_compact_and_stable() -> None:
    targets = [
        MhTarget("mh-1", "https://mh-1.example:4433", MhRole.PRIMARY),
        MhTarget("mh-2", "http://mh-2", MhRole.BACKUP),
    ]
    assert mh_list_json(targets, 1700000000123) == (
        '{"assigned_at_ms":1700000000123,"mhs":['
        '{"mh_id":"mh-1","endpoint":"https://mh-1.example:4433","role":"primary"},'
        '{"mh_id":"mh-2","endpoint":"http://mh-2","role":"backup"}]}'
    )
    assert mh_list_json(targets, 1) == mh_list_json(tuple(targets), 1)


def test_mh_list_json_empty() -> None:
    assert mh_list_json([], 0) == '{"assigned_at_ms":0,"mhs":[]}'
