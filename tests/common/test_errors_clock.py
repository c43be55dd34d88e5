"""`InvalidField` becomes a service's own error at its edge; the clock's two forms agree."""

from __future__ import annotations

import time
from datetime import UTC

import pytest

from darktower.common.clock import now_ms, utcnow
from darktower.common.errors import InvalidField, invalid_field_as
from darktower.gc.errors import InvalidGcRequest
from darktower.mc.errors import InvalidMcRequest


@pytest.mark.parametrize("service_error", [InvalidGcRequest, InvalidMcRequest])
def test_invalid_field_becomes_the_service_error_with_the_same_message(
    service_error: type[InvalidGcRequest] | type[InvalidMcRequest],
) -> None:
    with pytest.raises(service_error) as info, invalid_field_as(service_error):
        raise InvalidField("meeting_id", "required")
    error = info.value
    assert isinstance(error, InvalidGcRequest | InvalidMcRequest)
    assert str(error) == "meeting_id: required"
    assert (error.field, error.reason) == ("meeting_id", "required")
    assert error.code == "invalid_argument"
    assert isinstance(error.__cause__, InvalidField)


def test_other_errors_pass_through_unchanged() -> None:
    with pytest.raises(KeyError), invalid_field_as(InvalidGcRequest):
        raise KeyError("x")


def test_the_clock_is_utc_and_its_two_forms_agree() -> None:
    before = time.time()
    moment, ms = utcnow(), now_ms()
    after = time.time()
    assert moment.tzinfo is UTC
    assert before - 0.001 <= moment.timestamp() <= after + 0.001
    assert int(before * 1000) <= ms <= int(after * 1000) + 1
