"""The simulated region's state: what every concept of the model reads and changes."""

from __future__ import annotations

import abc
import itertools
import math
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

from darktower.common.backoff import RegistrationBackoff
from darktower.gc.placement import MhCandidate
from darktower.sim.costs import CostModel
from darktower.sim.engine import EventQueue
from darktower.sim.entities import Meeting, SimMc, SimMh
from darktower.sim.gc_pool import GcPool
from darktower.sim.record import Recorder
from darktower.sim.scenario import Scenario

__all__ = ["EPOCH", "NEVER", "WorldState"]

EPOCH = datetime(2026, 1, 5, tzinfo=UTC)
"""Simulated time 0 as a datetime (a Monday, midnight UTC), for `decide_reuse`."""

NEVER = math.inf


class WorldState(abc.ABC):
    """What a scenario run holds: the fleet, the GC's and the clients' state, and the counters
    the summary reads; time and network helpers. The concepts that change it are the classes
    built on it, one a module (`gc_view`, `meetings`, `joins`, `failures`, `model`)."""

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
        self.shard_down_until = [-NEVER] * fl.redis_shards
        self.gc_down_until = -NEVER
        self.db_epoch = 0
        self.mh_known_at = [0.0] * len(self.mhs)
        self.mh_cache: list[MhCandidate] = []
        self.mh_cache_until = -NEVER
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

    # -- what a later concept provides ------------------------------------------------------

    @abc.abstractmethod
    def _send_join(self, m: Meeting, t_send: float) -> None:
        """The client sends a join for `m` at `t_send` (`joins`)."""

    @abc.abstractmethod
    def _start_registering(self, mc: SimMc, t: float) -> None:
        """The MC starts registering with the GC at `t` (`failures`)."""
