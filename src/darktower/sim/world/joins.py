"""Joins in the simulated region: the GC's join handler, the MC's admission, client retries."""

from __future__ import annotations

from darktower.common.backoff import backoff_bounds
from darktower.common.health import PLACEABLE_HEALTH
from darktower.gc.placement import (
    ExistingAssignment,
    McRecord,
    Move,
    Reuse,
    decide_reuse,
    rank_mcs,
    why_none,
)
from darktower.mc.admission import AdmissionState, decide_admission
from darktower.sim.entities import Meeting, SimMc
from darktower.sim.gc_pool import Job
from darktower.sim.world.meetings import Meetings
from darktower.sim.world.state import NEVER

__all__ = ["Joins"]


class Joins(Meetings):
    """A client's join: sent, decided by the GC tier (`decide_reuse`, `rank_mcs`, the MC's
    `decide_admission`), answered, retried."""

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
            last_heartbeat_at=None if last == -NEVER else self._dt(last),
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
        if t >= self.probe_until.get(idx, -NEVER):
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
