"""The join use case of the Global Controller: the I/O around placement (docs/reference.md).

`service.PlacementService.join` reads the store, claims the meeting, calls MCs and records
placement events and metrics; every decision it acts on is a pure function of
`darktower.gc.placement` (MC ranking, MH choice, reuse or move). The other modules hold what a
join takes and gives: `joiner` (who joins, checked for form), `answer` (`JoinResult`, the join
token issuer, the signaling URL), `events` (the recent-placements log's lines), `metrics`.
"""

from __future__ import annotations

from darktower.gc.join.answer import (
    SIGNALING_PATH,
    JoinResult,
    JoinTokenIssuer,
    MhInfo,
    signaling_url,
)
from darktower.gc.join.events import PlacementEvent
from darktower.gc.join.joiner import (
    DEFAULT_DISPLAY_NAME,
    USER_ID_PATTERN,
    Joiner,
    Role,
    new_user_id,
    validate_joiner,
)
from darktower.gc.join.service import PlacementService

__all__ = [
    "DEFAULT_DISPLAY_NAME",
    "SIGNALING_PATH",
    "USER_ID_PATTERN",
    "JoinResult",
    "JoinTokenIssuer",
    "Joiner",
    "MhInfo",
    "PlacementEvent",
    "PlacementService",
    "Role",
    "new_user_id",
    "signaling_url",
    "validate_joiner",
]
