"""MC choice: the order in which the Global Controller offers a new meeting to Meeting Controllers.

docs/reference.md, "Placement". Pure functions over `McCandidate` snapshots; the caller reads
the store, converts, and then tries the MCs in the order `rank_mcs` gives (up to 3, a refusal or
timeout moving on to the next).

Eligibility (`eligible_mcs`) — an MC may be offered the meeting only if all of these hold:

* its region is the requested region;
* its health is ``"healthy"`` or ``"degraded"`` (a degraded MC is still placeable; its load
  usually ranks it lower). ``"pending"`` (registered, never heartbeated), ``"unhealthy"`` and
  ``"draining"`` are not;
* it is fresh: ``last_heartbeat_age_s`` is not ``None`` and ``<= staleness_s`` (an age exactly
  at the threshold is still fresh);
* it is below capacity: ``current_meetings + assignments_since_heartbeat < max_meetings`` and
  ``current_participants < max_participants``;
* its id is not in ``exclude`` (MCs already tried for this join).

Load (`load_ratio`) is the larger of the meetings ratio
``(current_meetings + assignments_since_heartbeat) / max_meetings`` and the participants ratio
``current_participants / max_participants``. Counting the assignments made since the last
heartbeat is what stops a burst of joins from piling onto the MC that looked emptiest at the
last heartbeat.

Ranking (`rank_mcs`): eligible MCs sorted by load, ties by id; the best ``top_k`` are ordered by
weighted-random sampling without replacement, weight ``(1 - load) + WEIGHT_EPSILON``, and the
rest follow in load order. The randomness is the anti-herding measure: equally loaded MCs share
a burst instead of the first one taking all of it, while an emptier MC is still favoured. The
epsilon keeps an almost-full MC drawable so that the weights never all vanish.

`why_none` names the reason for the 503 when nothing is eligible.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum

from darktower.common.health import PLACEABLE_HEALTH

__all__ = [
    "DEFAULT_TOP_K",
    "WEIGHT_EPSILON",
    "McCandidate",
    "NoCandidateReason",
    "eligible_mcs",
    "load_ratio",
    "rank_mcs",
    "why_none",
]

DEFAULT_TOP_K = 5
"""How many of the least loaded MCs the weighted-random draw is made among (docs/reference.md)."""

WEIGHT_EPSILON = 0.01
"""Added to every sampling weight so that an MC at (almost) full load can still be drawn."""

_DRAINING = "draining"


@dataclass(frozen=True, slots=True)
class McCandidate:
    """A Meeting Controller as placement sees it, converted by the caller from the store.

    `health` is one of ``"pending"``, ``"healthy"``, ``"degraded"``, ``"unhealthy"``,
    ``"draining"``. `last_heartbeat_age_s` is the time since its last heartbeat, `None` if it
    has never sent one. `assignments_since_heartbeat` counts meetings placed here after that
    heartbeat, which its `current_meetings` does not include yet. Capacities are expected to be
    positive (RegisterMC enforces it); a non-positive capacity makes the MC count as full.
    """

    id: str
    region: str
    health: str
    max_meetings: int
    current_meetings: int
    max_participants: int
    current_participants: int
    last_heartbeat_age_s: float | None
    assignments_since_heartbeat: int


class NoCandidateReason(StrEnum):
    """Why no MC could be offered the meeting; the text of the 503."""

    NONE_REGISTERED = "none_registered"
    ALL_DRAINING = "all_draining"
    ALL_AT_CAPACITY = "all_at_capacity"
    NONE_HEALTHY = "none_healthy"


def _is_fresh(c: McCandidate, staleness_s: float) -> bool:
    return c.last_heartbeat_age_s is not None and c.last_heartbeat_age_s <= staleness_s


def _below_capacity(c: McCandidate) -> bool:
    meetings = c.current_meetings + c.assignments_since_heartbeat
    return meetings < c.max_meetings and c.current_participants < c.max_participants


def _ratio(current: int, maximum: int) -> float:
    # A zero or negative limit means "no room"; report it as full rather than divide by it.
    if maximum <= 0:
        return 1.0
    return current / maximum


def _check_unique(candidates: Iterable[McCandidate]) -> list[McCandidate]:
    result = list(candidates)
    ids = [c.id for c in result]
    if len(set(ids)) != len(ids):
        raise ValueError("candidate ids must be unique")
    return result


def load_ratio(c: McCandidate) -> float:
    """The MC's load: the larger of its meetings ratio and its participants ratio.

    Meetings ratio = ``(current_meetings + assignments_since_heartbeat) / max_meetings``;
    participants ratio = ``current_participants / max_participants``. In ``[0, 1)`` for an
    eligible MC; 1 or more for a full one.
    """
    meetings = _ratio(c.current_meetings + c.assignments_since_heartbeat, c.max_meetings)
    participants = _ratio(c.current_participants, c.max_participants)
    return max(meetings, participants)


def eligible_mcs(
    candidates: Iterable[McCandidate],
    *,
    region: str,
    staleness_s: float,
    exclude: Collection[str] = (),
) -> list[McCandidate]:
    """The candidates that may be offered a meeting in `region`, in input order.

    The rules are in the module docstring. Raises `ValueError` if two candidates share an id.
    """
    return [
        c
        for c in _check_unique(candidates)
        if c.region == region
        and c.health in PLACEABLE_HEALTH
        and _is_fresh(c, staleness_s)
        and _below_capacity(c)
        and c.id not in exclude
    ]


def _weighted_order(mcs: list[McCandidate], rng: random.Random) -> list[McCandidate]:
    """`mcs` reordered by weighted sampling without replacement, weight (1 - load) + epsilon."""
    pool = [(c, max(0.0, 1.0 - load_ratio(c)) + WEIGHT_EPSILON) for c in mcs]
    order: list[McCandidate] = []
    while pool:
        point = rng.random() * sum(w for _, w in pool)
        chosen = len(pool) - 1  # float rounding can leave `point` past the last bucket
        for i, (_, weight) in enumerate(pool):
            if point < weight:
                chosen = i
                break
            point -= weight
        order.append(pool.pop(chosen)[0])
    return order


def rank_mcs(
    candidates: Iterable[McCandidate],
    *,
    region: str,
    staleness_s: float,
    exclude: Collection[str] = (),
    top_k: int = DEFAULT_TOP_K,
    rng: random.Random,
) -> list[McCandidate]:
    """The eligible MCs in the order they should be offered the meeting; empty if none.

    The best `top_k` by load (ties by id) come first, shuffled by weighted-random sampling
    drawn from `rng` only; the remaining eligible MCs follow in load order. The same
    candidates, arguments and `rng` state give the same answer. Raises `ValueError` if
    `top_k < 1` or two candidates share an id.
    """
    if top_k < 1:
        raise ValueError("top_k must be at least 1")
    eligible = eligible_mcs(candidates, region=region, staleness_s=staleness_s, exclude=exclude)
    by_load = sorted(eligible, key=lambda c: (load_ratio(c), c.id))
    return _weighted_order(by_load[:top_k], rng) + by_load[top_k:]


def why_none(
    candidates: Iterable[McCandidate], *, region: str, staleness_s: float
) -> NoCandidateReason:
    """Why no MC in `region` is eligible; the reason for the 503.

    Precondition: `eligible_mcs` (without `exclude`) is empty for the same arguments; otherwise
    `ValueError`, as is a duplicate id. The first matching rule wins:

    1. no MC registered in `region` → `NONE_REGISTERED`;
    2. there is at least one fresh MC that is healthy, degraded or draining, and every such MC
       is draining → `ALL_DRAINING`;
    3. there is at least one fresh healthy-or-degraded MC (all of them, by the precondition,
       at capacity) → `ALL_AT_CAPACITY`;
    4. otherwise (all pending, unhealthy or stale) → `NONE_HEALTHY`.
    """
    in_region = [c for c in _check_unique(candidates) if c.region == region]
    if not in_region:
        return NoCandidateReason.NONE_REGISTERED
    if eligible_mcs(in_region, region=region, staleness_s=staleness_s):
        raise ValueError("why_none called while an MC is eligible")
    fresh = [c for c in in_region if _is_fresh(c, staleness_s)]
    live = [c for c in fresh if c.health in PLACEABLE_HEALTH or c.health == _DRAINING]
    if live and all(c.health == _DRAINING for c in live):
        return NoCandidateReason.ALL_DRAINING
    if any(c.health in PLACEABLE_HEALTH for c in fresh):
        return NoCandidateReason.ALL_AT_CAPACITY
    return NoCandidateReason.NONE_HEALTHY
