"""Meetings of the simulated region: arrivals (open loop), the prefill, hosting and ending,
bursts (closed loop)."""

from __future__ import annotations

from darktower.sim.entities import Meeting, SimMc
from darktower.sim.world.gc_view import GcView

__all__ = ["Meetings"]


class Meetings(GcView):
    """Meetings arriving, hosted on an MC, ending, and the closed-loop join burst."""

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
