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

The model is one class built in layers, one concept a module: `state` (what a run holds, time
and network) · `gc_view` (the GC's view of MCs and MHs) · `meetings` (arrivals, hosting,
ending, bursts) · `joins` (the GC's join handler, admission, client retries) · `failures`
(registration, sweeping, the scenario's failures) · `model` (`World`: sampling, `run`).
"""

from __future__ import annotations

from darktower.sim.world.model import World
from darktower.sim.world.state import EPOCH

__all__ = ["EPOCH", "World"]
