"""The Global Controller's placement decisions: which MC hosts a meeting, which MHs carry it.

Pure functions over plain frozen snapshots (SPEC §4, "Placement"). The join handler reads the
store, converts its rows into `McCandidate` / `MhCandidate`, calls these functions and acts on
the answer; nothing in this package does I/O or reads a clock.
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

__all__ = [
    "DEFAULT_MH_COUNT",
    "DEFAULT_TOP_K",
    "McCandidate",
    "MhCandidate",
    "NoCandidateReason",
    "choose_mhs",
    "eligible_mcs",
    "load_ratio",
    "rank_mcs",
    "why_none",
]
