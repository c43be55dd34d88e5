"""The Global Controller's placement decisions: which MC hosts a meeting, which MHs carry it,
and whether a meeting may stay on the MC it is on.

Pure functions over plain frozen snapshots (docs/reference.md, "Placement"): `mc_choice`
(eligibility, load, ranking), `mh_choice` (primary and backup MHs), `reuse` (reuse, move with a
reason, or place anew). Nothing in this package does I/O or reads a clock; the join use case
that reads the store, calls MCs and records events is `darktower.gc.join`.
"""

from __future__ import annotations

from darktower.gc.placement.mc_choice import (
    DEFAULT_TOP_K,
    McCandidate,
    NoCandidateReason,
    eligible_mcs,
    load_ratio,
    rank_mcs,
    why_none,
)
from darktower.gc.placement.mh_choice import DEFAULT_MH_COUNT, MhCandidate, choose_mhs
from darktower.gc.placement.reuse import (
    ExistingAssignment,
    McRecord,
    Move,
    PlaceNew,
    Reuse,
    ReuseDecision,
    decide_reuse,
    describe_move,
)

__all__ = [
    "DEFAULT_MH_COUNT",
    "DEFAULT_TOP_K",
    "ExistingAssignment",
    "McCandidate",
    "McRecord",
    "MhCandidate",
    "Move",
    "NoCandidateReason",
    "PlaceNew",
    "Reuse",
    "ReuseDecision",
    "choose_mhs",
    "decide_reuse",
    "describe_move",
    "eligible_mcs",
    "load_ratio",
    "rank_mcs",
    "why_none",
]
