"""The meeting settings rule (`darktower.common.meeting_settings`): what the GC's API and the MC
accept, and the JSON form kept in Redis."""

from __future__ import annotations

import pytest

from darktower.common.errors import InvalidField
from darktower.common.meeting_settings import (
    MAX_EMPTY_TIMEOUT_SECONDS,
    MAX_METADATA_BYTES,
    MAX_PARTICIPANTS_SETTING,
    MeetingSettings,
    validate_settings,
)


@pytest.mark.parametrize(
    ("cap", "timeout", "metadata"),
    [
        (None, None, None),
        (1, 1, ""),
        (MAX_PARTICIPANTS_SETTING, MAX_EMPTY_TIMEOUT_SECONDS, "x" * MAX_METADATA_BYTES),
        (2, 30, "é" * (MAX_METADATA_BYTES // 2)),  # two bytes each: exactly the limit
        (None, None, '{"any": ["json", 1]}'),
    ],
)
def test_accepted_settings_keep_their_values(
    cap: int | None, timeout: int | None, metadata: str | None
) -> None:
    settings = validate_settings(cap, timeout, metadata)
    assert settings == MeetingSettings(cap, timeout, metadata)
    assert MeetingSettings.from_json(settings.to_json()) == settings


@pytest.mark.parametrize(
    ("cap", "timeout", "metadata", "field"),
    [
        (0, None, None, "max_participants"),
        (-1, None, None, "max_participants"),
        (MAX_PARTICIPANTS_SETTING + 1, None, None, "max_participants"),
        (True, None, None, "max_participants"),
        ("2", None, None, "max_participants"),
        (2.0, None, None, "max_participants"),
        (None, 0, None, "empty_timeout_seconds"),
        (None, MAX_EMPTY_TIMEOUT_SECONDS + 1, None, "empty_timeout_seconds"),
        (None, "1", None, "empty_timeout_seconds"),
        (None, None, "x" * (MAX_METADATA_BYTES + 1), "metadata"),
        (None, None, "é" * (MAX_METADATA_BYTES // 2 + 1), "metadata"),
        (None, None, "\ud800", "metadata"),  # a lone surrogate is no UTF-8 text
        (None, None, 7, "metadata"),
    ],
)
def test_refused_settings_name_their_field(
    cap: object, timeout: object, metadata: object, field: str
) -> None:
    with pytest.raises(InvalidField) as refused:
        validate_settings(cap, timeout, metadata)
    assert refused.value.field == field
    assert str(refused.value).startswith(f"{field}: ")
    assert "xxxx" not in str(refused.value)  # never echoes the value


@pytest.mark.parametrize(
    "raw",
    ["", "not json", "[]", '{"max_participants": 0}', '{"metadata": 5}'],
)
def test_stored_settings_that_break_the_rule_are_refused(raw: str) -> None:
    with pytest.raises(InvalidField):
        MeetingSettings.from_json(raw)


def test_empty_means_every_default() -> None:
    assert MeetingSettings().empty
    assert not MeetingSettings(metadata="").empty
