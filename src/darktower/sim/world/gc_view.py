"""The GC's view of MCs and MHs in the simulated region: candidates, the load heap, beats."""

from __future__ import annotations

import heapq
import math

from darktower.common.health import PLACEABLE_HEALTH
from darktower.gc.placement import DEFAULT_TOP_K, McCandidate, MhCandidate, choose_mhs, load_ratio
from darktower.mc.health import derive_health
from darktower.sim.entities import SimMc
from darktower.sim.world.state import NEVER, WorldState
from darktower.wire.dark_tower import internal_pb2 as pb

__all__ = ["GcView"]


class GcView(WorldState):
    """The GC's view of the MCs (as of their last beats, in a heap by load) and of the MHs."""

    # -- the GC's view of MCs ----------------------------------------------------------------

    def _last_beat(self, mc: SimMc, t: float) -> float:
        if not mc.alive or not mc.known or mc.registering:
            return mc.last_beat
        fast = self.s.heartbeat.fast_s
        return mc.anchor + math.floor((t - mc.anchor) / fast) * fast

    def _candidate(self, mc: SimMc, t: float) -> McCandidate:
        last = self._last_beat(mc, t)
        fl = self.s.fleet
        return McCandidate(
            id=mc.id,
            region=fl.region,
            health=mc.health,
            max_meetings=fl.mc_max_meetings,
            current_meetings=mc.rep_meetings,
            max_participants=fl.mc_max_participants,
            current_participants=mc.rep_participants,
            last_heartbeat_age_s=None if last == -NEVER else max(0.0, t - last),
            assignments_since_heartbeat=mc.since,
        )

    def _push(self, mc: SimMc, t: float) -> None:
        mc.version += 1
        mc.in_index = mc.known and mc.health in PLACEABLE_HEALTH
        if mc.in_index:
            key = load_ratio(self._candidate(mc, t))
            heapq.heappush(self.index, (key, mc.id, mc.version, mc.idx))
            if len(self.index) > 4 * len(self.mcs) + 1024:
                self._rebuild_index()

    def _rebuild_index(self) -> None:
        entries = [e for e in self.index if self.mcs[e[3]].version == e[2]]
        heapq.heapify(entries)
        self.index = entries

    def _top_candidates(self, t: float) -> list[McCandidate]:
        """The `DEFAULT_TOP_K` least loaded eligible MCs, by (load, id), as the GC sees them."""
        keep: list[tuple[float, str, int, int]] = []
        chosen: list[McCandidate] = []
        staleness = self.s.heartbeat.staleness_s
        # Cheap checks first, exactly the eligibility rules for what the heap holds (one
        # region; placeable health when pushed, any change of it re-pushes); `rank_mcs`
        # applies the real `eligible_mcs` to the chosen ones again.
        while self.index and len(chosen) < DEFAULT_TOP_K:
            entry = heapq.heappop(self.index)
            mc = self.mcs[entry[3]]
            if entry[2] != mc.version or not mc.in_index:
                continue
            if entry[0] >= 1.0:
                keep.append(entry)  # full, and so is everything after it in the heap
                break
            last = self._last_beat(mc, t)
            if last == -NEVER or t - last > staleness:
                mc.in_index = False  # stale: back in on its next registration
                continue
            chosen.append(self._candidate(mc, t))
            keep.append(entry)
        for entry in keep:
            heapq.heappush(self.index, entry)
        return chosen

    def _known_candidates(self, t: float) -> list[McCandidate]:
        return [self._candidate(mc, t) for mc in self.mcs if mc.known]

    def _mark_dirty(self, mc: SimMc, t: float) -> None:
        """The MC's counts changed: it reports them at its next beat."""
        if mc.beat_pending or not mc.alive or not mc.known or mc.registering:
            return
        fast = self.s.heartbeat.fast_s
        nxt = mc.anchor + (math.floor((t - mc.anchor) / fast) + 1) * fast
        mc.beat_pending = True
        self.events.schedule(nxt, self._beat, mc, mc.incarnation)

    def _beat(self, mc: SimMc, incarnation: int) -> None:
        mc.beat_pending = False
        t = self.events.now
        if incarnation != mc.incarnation or not mc.alive or mc.registering:
            return
        if t < self.gc_down_until:
            self._mark_dirty(mc, t)
            return
        if not mc.known:
            self._start_registering(mc, t)
            return
        self._apply_beat(mc, t)

    def _apply_beat(self, mc: SimMc, t: float) -> None:
        fl = self.s.fleet
        mc.rep_meetings = mc.hosted
        mc.rep_participants = mc.participants
        mc.since = 0
        status = derive_health(
            draining=False,
            redis_ok=True,
            current_meetings=mc.hosted,
            max_meetings=fl.mc_max_meetings,
            current_participants=mc.participants,
            max_participants=fl.mc_max_participants,
        )
        mc.health = pb.HealthStatus.Name(status).lower()
        self._push(mc, t)

    # -- MHs ---------------------------------------------------------------------------------

    def _mh_choice(self, t: float) -> list[MhCandidate]:
        if t < self.mh_cache_until:
            return self.mh_cache
        hb = self.s.heartbeat
        fl = self.s.fleet
        cands = [
            MhCandidate(
                id=mh.id,
                region=fl.region,
                zone=f"zone-{mh.zone}",
                health="healthy",
                max_streams=fl.mh_max_streams,
                current_streams=mh.streams,
                last_report_age_s=(t - mh.died_at) if not mh.alive else 0.0,
                webtransport_endpoint=f"https://{mh.id}.example:4433",
            )
            for i, mh in enumerate(self.mhs)
            if self.mh_known_at[i] <= t
        ]
        self.mh_cache = choose_mhs(cands, region=fl.region, staleness_s=hb.staleness_s)
        self.mh_cache_until = t + hb.mh_report_s
        return self.mh_cache
