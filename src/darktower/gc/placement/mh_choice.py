"""MH choice: which Media Handlers carry a new meeting's media.

docs/reference.md, "Placement": up to two MHs, distinct, least loaded first. A pure function over
`MhCandidate` snapshots; the caller reads the store and converts.

Eligibility — an MH may be chosen only if all of these hold:

* its region is the requested region;
* its health is ``"healthy"`` or ``"degraded"``;
* it is fresh: ``last_report_age_s`` is not ``None`` and ``<= staleness_s``;
* ``current_streams < max_streams``.

Order — MHs are taken least loaded first (``current_streams / max_streams``, ties by id), never
the same MH twice. Zone spreading: for the second and later picks, if every MH picked so far
has a known zone, an eligible MH whose zone is known and not yet used is preferred (the least
loaded such MH) even when it is more loaded than an MH in a used zone, so that losing one zone
does not take all of a meeting's media down. Only when no such MH exists is the least loaded
remaining MH taken. An MH with an unknown zone never counts as being in a new zone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from darktower.common.health import PLACEABLE_HEALTH

__all__ = ["DEFAULT_MH_COUNT", "MhCandidate", "choose_mhs"]

DEFAULT_MH_COUNT = 2
"""How many MHs a meeting is given (docs/reference.md)."""


@dataclass(frozen=True, slots=True)
class MhCandidate:
    """A Media Handler as placement sees it, converted by the caller from the store.

    `zone` is `None` when the MH did not report one. `last_report_age_s` is the time since its
    last load report, `None` if it has never sent one. A non-positive `max_streams` makes the MH
    count as full.
    """

    id: str
    region: str
    zone: str | None
    health: str
    max_streams: int
    current_streams: int
    last_report_age_s: float | None
    webtransport_endpoint: str


def _load(m: MhCandidate) -> float:
    # A zero or negative limit means "no room"; report it as full rather than divide by it.
    if m.max_streams <= 0:
        return 1.0
    return m.current_streams / m.max_streams


def _eligible(m: MhCandidate, region: str, staleness_s: float) -> bool:
    return (
        m.region == region
        and m.health in PLACEABLE_HEALTH
        and m.last_report_age_s is not None
        and m.last_report_age_s <= staleness_s
        and m.current_streams < m.max_streams
    )


def choose_mhs(
    candidates: Iterable[MhCandidate],
    *,
    region: str,
    staleness_s: float,
    count: int = DEFAULT_MH_COUNT,
) -> list[MhCandidate]:
    """Up to `count` distinct eligible MHs, in pick order; fewer if fewer exist, `[]` if none.

    The rules are in the module docstring. Deterministic: no randomness, ties broken by id.
    Raises `ValueError` if `count` is negative or two candidates share an id.
    """
    if count < 0:
        raise ValueError("count must not be negative")
    pool = list(candidates)
    if len({m.id for m in pool}) != len(pool):
        raise ValueError("candidate ids must be unique")
    remaining = sorted(
        (m for m in pool if _eligible(m, region, staleness_s)),
        key=lambda m: (_load(m), m.id),
    )
    picked: list[MhCandidate] = []
    used_zones: set[str] = set()
    zones_known = True
    while remaining and len(picked) < count:
        choice = remaining[0]
        if picked and zones_known:
            choice = next(
                (m for m in remaining if m.zone is not None and m.zone not in used_zones),
                choice,
            )
        remaining.remove(choice)
        picked.append(choice)
        if choice.zone is None:
            zones_known = False
        else:
            used_zones.add(choice.zone)
    return picked
