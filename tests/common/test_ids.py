"""The shared id rule, its settings pattern and the host-derived default id."""

from __future__ import annotations

import socket
from typing import Annotated

import pytest
from pydantic import Field, TypeAdapter, ValidationError

from darktower.common.errors import InvalidField
from darktower.common.ids import (
    ID_FIELD_PATTERN,
    MAX_ID_BYTES,
    check_bytes,
    default_id,
    validate_id,
)

BAD_CHARS = "must be letters, digits, '-' or '_'"
TOO_LONG = "must be at most 255 bytes"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("m", id="one-char"),
        pytest.param("a" * MAX_ID_BYTES, id="255-bytes"),
        pytest.param("Meeting_01-x", id="mixed"),
        pytest.param("-", id="dash-only"),
    ],
)
def test_id_accepted(value: str) -> None:
    assert validate_id(value, "meeting_id") == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("", "required", id="empty"),
        pytest.param("a" * 256, TOO_LONG, id="256-bytes"),
        pytest.param("a" * 254 + "é", TOO_LONG, id="2-byte-char-over"),
        pytest.param("é" * 128, TOO_LONG, id="length-before-charset"),
        pytest.param("a/b", BAD_CHARS, id="slash"),
        pytest.param("a b", BAD_CHARS, id="space"),
        pytest.param("a{b", BAD_CHARS, id="open-brace"),
        pytest.param("{m}", BAD_CHARS, id="hash-tag"),
        pytest.param("a\n", BAD_CHARS, id="trailing-newline"),
        pytest.param("é", BAD_CHARS, id="non-ascii"),
    ],
)
def test_id_rejected(value: str, reason: str) -> None:
    with pytest.raises(InvalidField) as info:
        validate_id(value, "handler_id")
    assert (info.value.field, info.value.reason) == ("handler_id", reason)
    assert str(info.value) == f"handler_id: {reason}"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "value", ["m", "a" * 255, "a" * 256, "", "a-b_C9", "a b", "{m}", "é", "a\n", "a\nb"]
)
def test_the_settings_pattern_is_the_same_rule(value: str) -> None:
    # Settings check ids with `ID_FIELD_PATTERN` through pydantic's regex engine, requests with
    # `validate_id`: they must agree on every value.
    settings_id = TypeAdapter(Annotated[str, Field(pattern=ID_FIELD_PATTERN)])
    try:
        settings_id.validate_python(value)
        settings_ok = True
    except ValidationError:
        settings_ok = False
    try:
        validate_id(value, "id")
        rule_ok = True
    except InvalidField:
        rule_ok = False
    assert settings_ok == rule_ok


def test_check_bytes_counts_utf8_bytes_against_its_limit() -> None:
    check_bytes("é" * 25, "region", 50)
    with pytest.raises(InvalidField, match=r"^region: must be at most 50 bytes$"):
        check_bytes("é" * 25 + "a", "region", 50)


@pytest.mark.parametrize(
    ("hostname", "expected"),
    [
        ("box", "mc-box"),
        ("box.example.org", "mc-box-example-org"),
        ("my host{1}", "mc-my-host-1-"),
        ("h" * 300, "mc-" + "h" * 200),
    ],
)
def test_default_id_is_a_valid_id_from_the_hostname(
    monkeypatch: pytest.MonkeyPatch, hostname: str, expected: str
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: hostname)
    assert default_id("mc") == expected
    assert validate_id(default_id("mc"), "id") == expected
