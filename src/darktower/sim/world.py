"""The simulated region: MCs, MHs, the GC tier, Redis shards and the clients, in simulated time.

Every decision is made by the services' own pure functions, imported, never copied:

* a join: `decide_reuse` (reuse the live assignment, move it, or place anew), then `choose_mhs`
  and `rank_mcs` (eligibility, load with the assignments since the last heartbeat, weighted
  draw among the best five — the anti-herding rule), the first `placement_attempts` of them
  offered in turn; `why_none` names a 503;
* an offer, at the MC: `decide_admission` on the MC's true counts;
* the health an MC reports in its heartbeats: `derive_health`;
* registration retries: `RegistrationBackoff` (equal jitter) or, without jitter, the upper
  bound of `backoff_bounds` (the schedule `darktower dev` restarts children on).

What is aggregated rather than simulated one by one, and why it does not change a decision:

* heartbeats are not one event per beat. The GC's view of an MC (counts as of its last beat,
  plus the assignments since) changes only when the MC's counts changed, so an MC gets a beat
  event only when it has something new to report, at its next beat time; its beat *load* on
  the GC and PostgreSQL is counted per sample interval as (beating MCs) x (beats per second);
* a meeting's first joiner is simulated (it places the meeting); the other participants'
  joins are re-joins of a placed meeting (`decide_reuse` answers Reuse), counted as GC and
  PostgreSQL load in the interval the meeting was placed, and their Redis roster writes;
* ranking reads only the least loaded MCs: the GC's candidates are kept in a heap by
  `load_ratio`, and `rank_mcs` is given the five least loaded eligible MCs (ties by id). It
  draws among exactly those five and the GC offers at most `placement_attempts` (≤ 5), so the
  answer is the one the full registry would give, at a cost independent of the fleet's size;
* MH load reports arrive every `mh_report_s`; between two, the GC's MH view does not change,
  so `choose_mhs` is called once per report interval (and after a failure).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

from tenacity import RetryCallState, Retrying

from darktower.common.backoff import RegistrationBackoff, backoff_bounds
from darktower.common.health import PLACEABLE_HEALTH
from darktower.gc.placement import (
    DEFAULT_TOP_K,
    ExistingAssignment,
    McCandidate,
    McRecord,
    MhCandidate,
    Move,
    Reuse,
    choose_mhs,
    decide_reuse,
    load_ratio,
    rank_mcs,
    why_none,
)
from darktower.mc.admission import AdmissionState, decide_admission
from darktower.mc.health import derive_health
from darktower.sim.costs import CostModel
from darktower.sim.engine import EventQueue
from darktower.sim.entities import Meeting, SimMc, SimMh
from darktower.sim.gc_pool import GcPool, Job
from darktower.sim.record import Recorder
from darktower.sim.scenario import Failure, Scenario
from darktower.wire.dark_tower import internal_pb2 as pb

__all__ = ["EPOCH", "World"]

EPOCH = datetime(2026, 1, 5, tzinfo=UTC)
"""Simulated time 0 as a datetime (a Monday, midnight UTC), for `decide_reuse`."""

_NEVER = math.inf


class World:
    """A scenario run: `run()` fills `recorder` and the counters the summary reads."""

    def __init__(self, scenario: Scenario, costs: CostModel) -> None:
        self.s = scenario
        self.costs = costs
        # Simulation draws, not secrets.
        self.rng = random.Random(scenario.seed)  # noqa: S311
        self.rank_rng = random.Random(scenario.seed + 1)  # noqa: S311
        self.events = EventQueue()
        fl = scenario.fleet
        self.pool = GcPool(self.events, fl.gc_processes)
        samples = max(1, math.ceil(scenario.duration_s / scenario.sample_s))
        self.rec = Recorder(scenario.sample_s, samples)
        self.mcs = [SimMc(i, i % fl.zones) for i in range(scenario.mcs)]
        self.by_id = {mc.id: mc for mc in self.mcs}
        self.mhs = [SimMh(i, i % fl.zones) for i in range(fl.zones * fl.mhs_per_zone)]
        self.meetings: dict[int, Meeting] = {}
        self.next_meeting = 0
        self.index: list[tuple[float, str, int, int]] = []
        self.silent: set[int] = set()
        self.shard_meetings = [0] * fl.redis_shards
        self.shard_down_until = [-_NEVER] * fl.redis_shards
        self.gc_down_until = -_NEVER
        self.db_epoch = 0
        self.mh_known_at = [0.0] * len(self.mhs)
        self.mh_cache: list[MhCandidate] = []
        self.mh_cache_until = -_NEVER
        self.backoff = RegistrationBackoff(
            base=scenario.heartbeat.register_base_s,
            cap=scenario.heartbeat.register_cap_s,
            rng=random.Random(scenario.seed + 2),  # noqa: S311
        )
        self.jitter = True
        self.probe_until: dict[int, float] = {}
        self.cum_weights = list(itertools.accumulate(scenario.load.size_weights))
        self.bg_pending = 0.0  # process-seconds of aggregated re-joins in this interval
        self.pg_pending = 0.0
        # What the summary reads.
        self.counts: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        self.moves: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.replaced: list[float] = []
        self.unhealthy_after: list[float] = []
        self.failure_times: dict[str, float] = {}
        self.registered_times: list[float] = []
        self.burst_placed: Counter[str] = Counter()
        self.burst_latencies: list[float] = []
        self.burst_span: tuple[float, float] = (0.0, 0.0)
        self.burst_left = 0
        self.overloaded_samples = 0

    # -- time and network --------------------------------------------------------------------

    def _dt(self, t: float) -> datetime:
        return EPOCH + timedelta(seconds=t)

    def _oneway(self, zone_a: int, zone_b: int) -> float:
        n = self.s.network
        return (n.same_zone_ms if zone_a == zone_b else n.cross_zone_ms) / 1000

    def _client(self) -> float:
        return self.s.network.client_gc_ms / 1000

    def _curve(self, t: float) -> float:
        hour = (self.s.load.start_hour + t / 3600) % 24
        pts = self.s.load.curve
        for (h0, f0), (h1, f1) in itertools.pairwise(pts):
            if h0 <= hour <= h1:
                return f0 if h1 == h0 else f0 + (f1 - f0) * (hour - h0) / (h1 - h0)
        return pts[-1][1]

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
            last_heartbeat_age_s=None if last == -_NEVER else max(0.0, t - last),
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
            if last == -_NEVER or t - last > staleness:
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

    # -- joins -------------------------------------------------------------------------------

    def _send_join(self, m: Meeting, t_send: float) -> None:
        """The client sends a join for `m` at `t_send`."""
        m.sent_at = t_send
        self.events.schedule(t_send + self._client(), self._join_arrives, m)

    def _join_arrives(self, m: Meeting) -> None:
        t = self.events.now
        if m.ended:
            return
        if t < self.gc_down_until:
            self._join_failed(m, t + self._client(), "gc_down")
            return
        self.pool.submit(
            Job(t, lambda start: self._decide_join(m, start), lambda end: self._reply(m, end))
        )

    def _assignment(self, m: Meeting) -> tuple[ExistingAssignment | None, McRecord | None]:
        if m.gc_mc < 0 or m.epoch != self.db_epoch:
            return None, None
        mc = self.mcs[m.gc_mc]
        existing = ExistingAssignment(mc.id, self._dt(m.placed_at))
        if not mc.known:
            return existing, None
        last = self._last_beat(mc, self.events.now)
        record = McRecord(
            health=mc.health,
            last_heartbeat_at=None if last == -_NEVER else self._dt(last),
            registered_at=self._dt(mc.registered_at),
        )
        return existing, record

    def _decide_join(self, m: Meeting, t: float) -> float:
        """The GC's handler for a join of `m`, run at `t`; returns its cost."""
        c = self.costs
        m.answer, m.call_latency = -1, 0.0
        if m.unreachable >= 0:
            self._check_evidence(m, t)
        existing, record = self._assignment(m)
        hb = self.s.heartbeat
        decision = decide_reuse(existing, record, staleness_s=hb.staleness_s, now=self._dt(t))
        if isinstance(decision, Reuse):
            m.answer = m.gc_mc
            self.rec.add("pg_statements", t, c.statements_join_reuse)
            self.counts["joins_reused"] += 1
            return c.join_reuse_s
        if isinstance(decision, Move):
            self.moves[decision.reason] += 1
            m.gc_mc = -1
        self.rec.add("pg_statements", t, c.statements_join_new)
        if not self._mh_choice(t):
            self.refusals["no_media_handler"] += 1
            return c.join_reuse_s
        ranked = rank_mcs(
            self._top_candidates(t),
            region=self.s.fleet.region,
            staleness_s=hb.staleness_s,
            rng=self.rank_rng,
        )
        if not ranked:
            reason = why_none(
                self._known_candidates(t), region=self.s.fleet.region, staleness_s=hb.staleness_s
            )
            self.refusals[reason.value] += 1
            return c.join_reuse_s
        gc_zone = self.rng.randrange(self.s.fleet.zones)
        for cand in ranked[: self.s.fleet.placement_attempts]:
            mc = self.by_id[cand.id]
            rtt = 2 * self._oneway(gc_zone, mc.zone)
            if not mc.alive:
                timed_out = mc.crash_kind == "timeout"
                m.call_latency += self.s.network.mc_call_timeout_s if timed_out else rtt
                self.refusals["mc_timeout" if timed_out else "mc_unreachable"] += 1
                continue
            m.call_latency += rtt + c.mc_assign_s
            if self._admit(m, mc, t):
                return c.join_new_s
        self.refusals["all_refused"] += 1
        return c.join_new_s

    def _check_evidence(self, m: Meeting, t: float) -> None:
        """`load.evidence`: the GC's re-placement on evidence (gc/join/evidence.py): a join
        naming the MC its client could not reach makes the GC check that MC itself (one check
        per MC, its result kept 2 s); an MC that does not answer is marked UNHEALTHY, so
        `decide_reuse` moves the meeting at once. A live MC keeps its meetings."""
        idx, m.unreachable = m.unreachable, -1
        if idx != m.gc_mc or m.epoch != self.db_epoch:
            return
        mc = self.mcs[idx]
        if t >= self.probe_until.get(idx, -_NEVER):
            self.probe_until[idx] = t + 2.0
            self.counts["evidence_checks"] += 1
            timed_out = not mc.alive and mc.crash_kind == "timeout"
            m.call_latency += self.s.load.probe_s if timed_out else 2 * self._oneway(0, mc.zone)
        if not mc.alive and mc.known and mc.health in PLACEABLE_HEALTH:
            mc.health = "unhealthy"
            mc.version += 1
            mc.in_index = False
            self.counts["evidence_marks"] += 1
            self.silent.discard(idx)

    def _admit(self, m: Meeting, mc: SimMc, t: float) -> bool:
        fl = self.s.fleet
        rejection = decide_admission(
            AdmissionState(
                draining=False,
                ready=True,
                hosted_meetings=mc.hosted,
                admitting=0,
                max_meetings=fl.mc_max_meetings,
                current_participants=mc.participants,
                max_participants=fl.mc_max_participants,
                participant_estimate=fl.participant_estimate,
            )
        )
        if rejection is not None:
            self.refusals[f"mc_{rejection.value}"] += 1
            return False
        if t < self.shard_down_until[m.shard]:
            self.refusals["mc_unhealthy_redis"] += 1
            return False
        self._host(m, mc, t)
        mc.since += 1
        self._push(mc, t)
        return True

    def _host(self, m: Meeting, mc: SimMc, t: float) -> None:
        c = self.costs
        mc.hosted += 1
        mc.participants += m.size
        mc.meetings.add(m.id)
        m.mc = m.gc_mc = mc.idx
        m.epoch = self.db_epoch
        m.placed_at = t
        m.answer = mc.idx
        mhs = self._mh_choice(t)
        if mhs:
            m.mh = int(mhs[0].id.split("-")[1]) - 1
            self.mhs[m.mh].streams += m.size
        self.shard_meetings[m.shard] += 1
        self.rec.add(
            f"redis_ops_{m.shard}", t, c.redis_ops_place + m.size * c.redis_ops_participant
        )
        self.rec.add("placements", t)
        if m.size > 1:
            self.bg_pending += (m.size - 1) * c.join_reuse_s
            self.pg_pending += (m.size - 1) * c.statements_join_reuse
        self._mark_dirty(mc, t)

    def _reply(self, m: Meeting, gc_done: float) -> None:
        t_client = gc_done + m.call_latency + self._client()
        self.events.schedule(t_client, self._answered, m, m.answer)

    def _answered(self, m: Meeting, answer: int) -> None:
        t = self.events.now
        if m.ended:
            return
        if answer < 0:
            self._join_failed(m, t, "refused")
            return
        mc = self.mcs[answer]
        if not mc.alive or m.mc != answer:
            if self.s.load.evidence:
                # The client asks again at once, naming the MC it could not reach.
                m.unreachable = answer
                self._join_failed(m, t, "named_a_dead_mc", again_at=t + self.s.load.detect_s)
                return
            self._join_failed(m, t, "named_a_dead_mc")
            return
        latency = t - m.sent_at
        self.latencies.append(latency)
        self.rec.latency(t, latency)
        if m.lost_at is not None:
            self.replaced.append(t - m.lost_at)
            self.rec.add("replaced", t)
            m.lost_at = None
        if m.burst:
            self.burst_placed[mc.id] += 1
            self.burst_latencies.append(latency)
            self.burst_span = (self.burst_span[0], t)
            self._next_burst_join(t)

    def _join_failed(
        self, m: Meeting, t: float, why: str, *, again_at: float | None = None
    ) -> None:
        weight = m.size if m.lost_at is not None else 1
        self.rec.add("failed_joins", t, weight)
        self.counts[f"failed_{why}"] += 1
        self.counts["failed_joins"] += weight
        if t - m.started > self.s.load.give_up_s:
            self.counts["gave_up"] += 1
            self._end(m)
            return
        if again_at is not None:
            self._send_join(m, again_at)
            return
        m.attempts += 1
        self._send_join(m, t + self._retry_wait(m.attempts))

    def _retry_wait(self, attempt: int) -> float:
        """A client's wait before its next join: `retry_s` every time, or with `retry_backoff`
        the MCs' registration schedule (equal jitter, doubling from `retry_s` to
        `retry_cap_s`), which the simulator then applies to clients as well."""
        load = self.s.load
        if not load.retry_backoff:
            return load.retry_s
        low, high = backoff_bounds(attempt, base=load.retry_s, cap=load.retry_cap_s)
        return self.rng.uniform(low, high)

    # -- meetings ----------------------------------------------------------------------------

    def _new_meeting(self, t: float, size: int) -> Meeting:
        self.next_meeting += 1
        m = Meeting(self.next_meeting, size, self.s.fleet.redis_shards, t)
        self.meetings[m.id] = m
        return m

    def _size(self) -> int:
        load = self.s.load
        return self.rng.choices(load.sizes, cum_weights=self.cum_weights)[0]

    def _arrivals(self) -> None:
        """Arrivals of a non-homogeneous Poisson process (thinning against the peak rate)."""
        load = self.s.load
        peak_rate = load.peak_meetings / load.mean_duration_s
        t = self.events.now
        horizon = min(self.s.duration_s, t + self.s.sample_s)
        while True:
            t += self.rng.expovariate(peak_rate)
            if t > horizon:
                break
            if self.rng.random() < self._curve(t):
                m = self._new_meeting(t, self._size())
                self.events.schedule(
                    t + self.rng.expovariate(1 / load.mean_duration_s), self._end, m
                )
                self._send_join(m, t)
        if horizon < self.s.duration_s:
            self.events.schedule(horizon, self._arrivals)

    def _prefill(self) -> None:
        """The meetings already running at time 0, spread evenly over the MCs (the steady
        state placement keeps — business-day.toml shows it), without the GC's costs; then
        every MC reports them, as after a heartbeat."""
        load = self.s.load
        count = round(load.peak_meetings * self._curve(0.0))
        fl = self.s.fleet
        n = len(self.mcs)
        for i in range(count):
            m = self._new_meeting(0.0, self._size())
            for j in range(n):
                mc = self.mcs[(i + j) % n]
                if mc.hosted < fl.mc_max_meetings and (
                    mc.participants + m.size <= fl.mc_max_participants
                ):
                    self._host(m, mc, 0.0)
                    break
            self.events.schedule(self.rng.expovariate(1 / load.mean_duration_s), self._end, m)
        self.bg_pending = self.pg_pending = 0.0
        for key in list(self.rec.series):
            self.rec.series[key] = [0.0] * self.rec.samples
        for mc in self.mcs:
            mc.beat_pending = False
            self._apply_beat(mc, 0.0)
        self.counts["prefilled"] = count

    def _end(self, m: Meeting) -> None:
        t = self.events.now
        if m.ended:
            return
        m.ended = True
        del self.meetings[m.id]
        if m.mc >= 0:
            mc = self.mcs[m.mc]
            if mc.alive and m.id in mc.meetings:
                self._unhost(m, mc)
                self._mark_dirty(mc, t)
                c = self.costs
                self.rec.add("pg_statements", t, c.statements_meeting_end)
                self.rec.add(
                    f"redis_ops_{m.shard}", t, c.redis_ops_end + m.size * c.redis_ops_participant
                )

    def _unhost(self, m: Meeting, mc: SimMc) -> None:
        mc.hosted -= 1
        mc.participants -= m.size
        mc.meetings.discard(m.id)
        self.shard_meetings[m.shard] -= 1
        if m.mh >= 0:
            self.mhs[m.mh].streams -= m.size
        m.mc = -1

    # -- bursts (closed loop) ----------------------------------------------------------------

    def _start_burst(self) -> None:
        b = self.s.burst
        self.burst_left = b.joins
        self.burst_span = (self.events.now, self.events.now)
        for _ in range(min(b.in_flight, b.joins)):
            self._next_burst_join(self.events.now)

    def _next_burst_join(self, t: float) -> None:
        if self.burst_left <= 0:
            return
        self.burst_left -= 1
        m = self._new_meeting(t, self.s.burst.meeting_size)
        m.burst = True
        self._send_join(m, t)

    # -- failures ----------------------------------------------------------------------------

    def _die(self, mc: SimMc, kind: str) -> None:
        t = self.events.now
        mc.last_beat = self._last_beat(mc, t)
        mc.alive = False
        mc.crash_kind = kind
        mc.incarnation += 1
        mc.beat_pending = False
        mc.registering = False
        self.silent.add(mc.idx)
        load = self.s.load
        self.counts["meetings_lost"] += len(mc.meetings)
        for mid in list(mc.meetings):
            m = self.meetings[mid]
            self._unhost(m, mc)
            m.lost_at = t
            m.started = t
            m.attempts = 0
            self._send_join(m, t + load.detect_s + self.rng.uniform(0, load.retry_s))
        mc.hosted = mc.participants = 0

    def _restart(self, mc: SimMc) -> None:
        mc.alive = True
        mc.crash_kind = ""
        mc.incarnation += 1
        self.silent.discard(mc.idx)
        self._start_registering(mc, self.events.now)

    def _start_registering(self, mc: SimMc, t: float) -> None:
        mc.registering = True
        self.events.schedule(t, self._register_attempt, mc, 1, mc.incarnation)

    def _register_attempt(self, mc: SimMc, attempt: int, incarnation: int) -> None:
        if incarnation != mc.incarnation or not mc.alive:
            return
        t = self.events.now
        arrive = t + self.s.network.cross_zone_ms / 1000
        self.rec.add("register_attempts", t)
        if arrive < self.gc_down_until:
            self._register_retry(mc, attempt, arrive)
            return

        def decide(start: float) -> float:
            if incarnation == mc.incarnation and mc.alive:
                mc.known = True
                mc.registered_at = start
                mc.health = "pending"
                mc.version += 1
                mc.in_index = False
            self.rec.add("pg_statements", start, self.costs.statements_register)
            self.rec.add("registrations", start)
            return self.costs.register_s

        def reply(done: float) -> None:
            answered = done + self.s.network.cross_zone_ms / 1000
            if answered - t > self.s.network.register_timeout_s:
                self._register_retry(mc, attempt, t + self.s.network.register_timeout_s)
                return
            self.events.schedule(answered, self._registered, mc, incarnation)

        self.events.schedule(arrive, lambda: self.pool.submit(Job(arrive, decide, reply)))

    def _register_retry(self, mc: SimMc, attempt: int, failed_at: float) -> None:
        if self.jitter:
            state = RetryCallState(Retrying(), None, (), {})
            state.attempt_number = attempt
            wait = self.backoff(state)
        else:
            wait = backoff_bounds(
                attempt, base=self.backoff.base, factor=self.backoff.factor, cap=self.backoff.cap
            )[1]
        self.events.schedule(
            failed_at + wait, self._register_attempt, mc, attempt + 1, mc.incarnation
        )

    def _registered(self, mc: SimMc, incarnation: int) -> None:
        if incarnation != mc.incarnation or not mc.alive:
            return
        t = self.events.now
        mc.registering = False
        if not mc.known:  # the GC forgot it again in between
            self._start_registering(mc, t)
            return
        # First fast beat at once; the beat schedule starts here.
        mc.anchor = t + self.s.network.cross_zone_ms / 1000
        mc.beat_pending = False
        self.registered_times.append(t)
        self.events.schedule(mc.anchor, self._first_beat, mc, incarnation)

    def _first_beat(self, mc: SimMc, incarnation: int) -> None:
        if incarnation == mc.incarnation and mc.alive and mc.known and not mc.registering:
            self._apply_beat(mc, self.events.now)

    def _sweep(self) -> None:
        t = self.events.now
        hb = self.s.heartbeat
        for idx in list(self.silent):
            mc = self.mcs[idx]
            if not mc.known or mc.health not in PLACEABLE_HEALTH:
                continue
            if t - mc.last_beat > hb.staleness_s:
                mc.health = "unhealthy"
                mc.version += 1
                mc.in_index = False
                self.unhealthy_after.append(t - mc.last_beat)
                self.rec.add("marked_unhealthy", t)
                if "first_unhealthy" not in self.failure_times:
                    self.failure_times["first_unhealthy"] = t
        if t + hb.sweep_s <= self.s.duration_s:
            self.events.schedule(t + hb.sweep_s, self._sweep)

    def _failure(self, f: Failure) -> None:
        t = self.events.now
        self.failure_times.setdefault(f.kind, t)
        if f.kind == "zone_loss":
            for mc in self.mcs:
                if mc.zone == f.zone and mc.alive:
                    self._die(mc, "timeout")
            for mh in self.mhs:
                if mh.zone == f.zone:
                    mh.alive, mh.died_at = False, t
            self.mh_cache_until = -_NEVER
            lost = sum(1 for i in range(self.pool.processes) if i % self.s.fleet.zones == f.zone)
            self.pool.set_processes(self.pool.processes - min(lost, self.pool.processes - 1))
        elif f.kind == "mc_kill":
            self._die(self.mcs[f.mc], "refused")
        elif f.kind == "mc_crashes":
            self._crash_next(f)
        elif f.kind == "gc_restart":
            self._gc_restart(f)
        elif f.kind == "redis_failover":
            self.shard_down_until[f.shard] = t + f.duration_s
            lost_ops = self.shard_meetings[f.shard] * f.duration_s / self.s.heartbeat.touch_s
            self.counts["redis_failed_touches"] += round(lost_ops)

    def _crash_next(self, f: Failure) -> None:
        rate = len(self.mcs) * f.per_mc_per_day / 86400
        if rate <= 0:
            return
        t = self.events.now + self.rng.expovariate(rate)
        if t <= self.s.duration_s:
            self.events.schedule(t, self._crash_one, f)

    def _crash_one(self, f: Failure) -> None:
        mc = self.mcs[self.rng.randrange(len(self.mcs))]
        if mc.alive:
            self._die(mc, "refused")
            self.counts["mc_crashes"] += 1
            self.events.schedule(self.events.now + f.restart_s, self._restart, mc)
        self._crash_next(f)

    def _gc_restart(self, f: Failure) -> None:
        t = self.events.now
        up = t + f.down_s
        self.jitter = f.jitter
        self.gc_down_until = up
        self.db_epoch += 1
        for mc in self.mcs:
            mc.known = False
            mc.health = "pending"
            mc.version += 1
            mc.in_index = False
            mc.last_beat = -_NEVER
        self.index = []
        self.mh_known_at = [
            up + self.rng.uniform(0, self.s.heartbeat.mh_report_s) for _ in self.mhs
        ]
        self.mh_cache_until = -_NEVER
        self.failure_times["gc_up"] = up
        fast = self.s.heartbeat.fast_s
        for mc in self.mcs:
            if not mc.alive:
                continue
            if f.mcs_restart:
                self._die(mc, "refused")
                mc.alive, mc.crash_kind = True, ""
                self.silent.discard(mc.idx)
                self._start_registering(mc, t + self.rng.uniform(0, 1.0))
            elif not mc.registering:
                # Beats fail while the GC is down; the first one after it is answered NOT_FOUND.
                nxt = mc.anchor + math.ceil((up - mc.anchor) / fast) * fast
                mc.beat_pending = True
                self.events.schedule(nxt, self._beat, mc, mc.incarnation)

    # -- sampling ----------------------------------------------------------------------------

    def _sample(self, i: int) -> None:
        s, c, rec = self.s, self.costs, self.rec
        t0 = i * s.sample_s
        width = min(s.sample_s, s.duration_s - t0)
        hb = s.heartbeat
        beating = [mc for mc in self.mcs if mc.alive and mc.known and not mc.registering]
        beats = len(beating) * width * (1 / hb.fast_s + 1 / hb.comprehensive_s)
        if t0 < self.gc_down_until:
            beats *= max(0.0, (t0 + width - self.gc_down_until) / width)
        idle = c.gc_idle_cores * self.pool.processes * width
        background = beats * c.heartbeat_s + idle + self.bg_pending
        busy = self.pool.take_busy()
        cores = min(float(self.pool.processes), (busy + background) / width)
        rec.put("gc_cores", i, cores)
        rec.put("gc_utilisation", i, cores / self.pool.processes)
        rec.put("heartbeats", i, beats)
        sweeps = self.pool.processes * width / hb.sweep_s * c.statements_per_sweep
        rec.add("pg_statements", t0, beats + self.pg_pending + sweeps)
        # The measured costs were taken on a GC with its own idle load: it is not added again.
        share = (background - idle) / (width * self.pool.processes)
        self.pool.background_share = min(0.999, share)
        if self.pool.background_share > 0.95:
            self.overloaded_samples += 1
        self.bg_pending = self.pg_pending = 0.0
        for k, n in enumerate(self.shard_meetings):
            up_share = 1.0
            if self.shard_down_until[k] > t0:
                up_share = max(0.0, 1 - (self.shard_down_until[k] - t0) / width)
            rec.add(f"redis_ops_{k}", t0, n * width / hb.touch_s * up_share)
        alive = [mc for mc in self.mcs if mc.alive]
        meetings = [mc.hosted for mc in alive]
        parts = [mc.participants for mc in alive]
        rec.put("meetings", i, sum(meetings))
        rec.put("participants", i, sum(parts))
        rec.put("mcs_alive", i, len(alive))
        rec.put("mcs_placeable", i, sum(1 for mc in self.mcs if mc.in_index))
        rec.put("max_mc_meetings", i, max(meetings, default=0))
        rec.put("mean_mc_meetings", i, sum(meetings) / len(alive) if alive else 0.0)
        rec.put("max_mc_participants", i, max(parts, default=0))
        rec.put("mean_mc_participants", i, sum(parts) / len(alive) if alive else 0.0)
        rec.put("gc_queue", i, len(self.pool.queue))

    # -- run ---------------------------------------------------------------------------------

    def run(self) -> None:
        """Run the scenario to its end."""
        s = self.s
        fast = s.heartbeat.fast_s
        for mc in self.mcs:
            mc.known = True
            mc.anchor = -self.rng.uniform(0, fast)
            mc.registered_at = -fast
            mc.health = "healthy"
            self._push(mc, 0.0)
        if s.load.prefill and s.load.peak_meetings:
            self._prefill()
        if s.load.peak_meetings:
            self.events.schedule(0.0, self._arrivals)
        if s.burst.joins:
            self.events.schedule(s.burst.at_s, self._start_burst)
        for f in s.failures:
            self.events.schedule(f.at_s, self._failure, f)
        # The sweeper's phase is independent of the failures'.
        self.events.schedule(self.rng.uniform(0, s.heartbeat.sweep_s), self._sweep)
        for i in range(self.rec.samples):
            end = min(s.duration_s, (i + 1) * s.sample_s)
            self.events.run(end)
            self._sample(i)
