"""The GC's domain values: what the store returns and takes, and what placement, validation
and metrics reason about. Plain frozen dataclasses and enums, no I/O and no ORM: a module
that only needs `Health` or `Controller` does not import the store.

Every timestamp is an aware UTC `datetime`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

__all__ = [
    "Assignment",
    "AssignmentState",
    "Claim",
    "Controller",
    "Health",
    "Heartbeat",
    "LivePlacement",
    "LoadReport",
    "MediaHandler",
    "Registry",
]


class Health(StrEnum):
    """Health of an MC or MH; mirrors `pb.HealthStatus` (stored as these strings)."""

    PENDING = "pending"
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    DRAINING = "draining"


class AssignmentState(StrEnum):
    """`claimed`: a GC is placing the meeting; `active`: it is placed on `mc_id`."""

    CLAIMED = "claimed"
    ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class Controller:
    """A registered meeting controller and its last reported load."""

    id: str
    region: str
    grpc_endpoint: str
    webtransport_endpoint: str | None
    max_meetings: int
    max_participants: int
    current_meetings: int
    current_participants: int
    health: Health
    cpu_percent: float | None
    memory_percent: float | None
    registered_at: datetime
    last_heartbeat_at: datetime | None
    # Assignments activated on this MC since its last heartbeat (which reset it to 0): its
    # reported counts do not include them yet, placement adds them so a burst spreads out.
    assignments_since_heartbeat: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One MC heartbeat as the GC records it, received `at`.

    CPU and memory come only with comprehensive heartbeats (None: keep the last values).
    `meeting_loads` (meeting id → participants) too, and is then the MC's whole list.
    """

    controller_id: str
    current_meetings: int
    current_participants: int
    max_meetings: int
    max_participants: int
    health: Health
    at: datetime
    cpu_percent: float | None = None
    memory_percent: float | None = None
    meeting_loads: Mapping[str, int] | None = None


@dataclass(frozen=True, slots=True)
class LoadReport:
    """One MH load report as the GC records it, received `at`."""

    handler_id: str
    current_streams: int
    health: Health
    at: datetime
    cpu_percent: float | None = None
    memory_percent: float | None = None
    bandwidth_percent: float | None = None


@dataclass(frozen=True, slots=True)
class MediaHandler:
    """A registered media handler and its last load report."""

    id: str
    region: str
    zone: str | None
    webtransport_endpoint: str
    grpc_endpoint: str
    max_streams: int
    current_streams: int
    health: Health
    cpu_percent: float | None
    memory_percent: float | None
    bandwidth_percent: float | None
    registered_at: datetime
    last_report_at: datetime | None


@dataclass(frozen=True, slots=True)
class Assignment:
    """One row of a meeting's placement history.

    While `state` is CLAIMED, `mc_id` is None, `mh_ids` empty and `assigned_at` None; an
    ACTIVE row has all three. `ended_at` is None for the live row (at most one per
    meeting and region).
    """

    meeting_id: str
    region: str
    mc_id: str | None
    mh_ids: tuple[str, ...]
    state: AssignmentState
    claimed_by: str
    claimed_at: datetime
    assigned_at: datetime | None
    ended_at: datetime | None
    # Participants the hosting MC last reported for the meeting (comprehensive heartbeats);
    # 0 until the first report, and for a CLAIMED row.
    participants: int = 0


@dataclass(frozen=True, slots=True)
class Claim:
    """Outcome of claiming a meeting (`GcStore.claim_meeting`).

    `won`: the caller now holds the live row in state CLAIMED and must activate or release
    it; `taken_over` is the stale claim it replaced, if any. Otherwise `existing` is the live
    row someone else holds (claimed or active).
    """

    won: bool
    existing: Assignment | None = None
    taken_over: Assignment | None = None


@dataclass(frozen=True, slots=True)
class LivePlacement:
    """A meeting's live row with what answering a re-join needs, read in one transaction:
    its MC (None if the row is CLAIMED or the MC is gone) and its MHs that still exist."""

    assignment: Assignment
    controller: Controller | None
    media_handlers: Mapping[str, MediaHandler]


@dataclass(frozen=True, slots=True)
class Registry:
    """The MCs and MHs of a region (each ordered by id), read in one transaction."""

    controllers: list[Controller]
    media_handlers: list[MediaHandler]
