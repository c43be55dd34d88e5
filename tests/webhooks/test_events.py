"""An event body's `created_at`: UTC, milliseconds, `Z`; right at second and day boundaries
(the second's text is cached, `events._iso_second`)."""

from __future__ import annotations

import json

import pytest

from darktower.webhooks.events import body_without_seq


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1_764_504_000_123, "2025-11-30T12:00:00.123Z"),
        (1_764_504_000_999, "2025-11-30T12:00:00.999Z"),
        (1_764_504_001_000, "2025-11-30T12:00:01.000Z"),
        (1_764_504_000_007, "2025-11-30T12:00:00.007Z"),  # the same second again, after another
        (1_764_547_199_999, "2025-11-30T23:59:59.999Z"),
        (1_764_547_200_000, "2025-12-01T00:00:00.000Z"),
    ],
)
def test_created_at(ms: int, text: str) -> None:
    body = body_without_seq(
        event_id="evt_1", created_at_ms=ms, meeting_id="m", mc_id="mc-1", generation=1
    )
    assert json.loads(body)["created_at"] == text
