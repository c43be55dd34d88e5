"""Failures in the simulated region and recovering from them: registration, sweeping, the
scenario's failure kinds."""

from __future__ import annotations

import math

from tenacity import RetryCallState, Retrying

from darktower.common.backoff import backoff_bounds
from darktower.common.health import PLACEABLE_HEALTH
from darktower.sim.entities import SimMc
from darktower.sim.gc_pool import Job
from darktower.sim.scenario import Failure
from darktower.sim.world.joins import Joins
from darktower.sim.world.state import NEVER

__all__ = ["Failures"]


class Failures(Joins):
    """MCs dying and restarting, (re-)registration with backoff, the GC's sweeper, and the
    scenario's failures (zone loss, MC kills and crashes, GC restart, Redis failover)."""

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
            self.mh_cache_until = -NEVER
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
            mc.last_beat = -NEVER
        self.index = []
        self.mh_known_at = [
            up + self.rng.uniform(0, self.s.heartbeat.mh_report_s) for _ in self.mhs
        ]
        self.mh_cache_until = -NEVER
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
