"""The whole model: sampling each interval and running a scenario to its end."""

from __future__ import annotations

from darktower.sim.world.failures import Failures

__all__ = ["World"]


class World(Failures):
    """A scenario run: `run()` fills `recorder` and the counters the summary reads."""

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
