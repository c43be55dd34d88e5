"""The heap of a long-running service, settled once it has started.

CPython's cyclic garbage collector stops the whole process while it scans; a full
(generation 2) collection scans every tracked object. A started service holds some 160,000 of
them that live as long as it does — imported modules, settings, servers, metrics — and each
full collection scanned them all again: on a loaded 2-core machine a full collection of an MC
during a 1,000-person join storm took 200 to 330 ms, every ping waiting behind it.

`settle_heap()` collects once and then freezes what is left (`gc.freeze`): the startup objects
move to the permanent generation, which the collector no longer scans, and the full
collections that follow scan only what the service made since (74 to 111 ms in the same storm at
the same load; `bench/README.md`). The collector itself stays on: cycles made after the start
are collected as before. A frozen object that later becomes cyclic garbage is never reclaimed,
which is why this runs once, after the start, when what is alive is what lives for good.

What the service makes since is most of the heap of a busy MC (5,000 connected participants:
some 1.5 million tracked objects, a full collection 0.3 to 2 s on a loaded 2-core machine, and
none of them collected anything), so full collections are also made rarer: at most one per
`FULL_COLLECTION_EVERY` collections of generation 1 (CPython's default is 10), still only when
the survivors since the last one are a quarter of the old objects (CPython's own rule). In the
`participants` benchmark that made 1 full collection in the run instead of 13. Young
collections, which reclaim almost every cycle, run as before.
"""

from __future__ import annotations

import gc
import logging

__all__ = ["FULL_COLLECTION_EVERY", "settle_heap"]

log = logging.getLogger(__name__)

# Generation-1 collections between two full ones, at least (the third threshold; CPython: 10).
FULL_COLLECTION_EVERY = 100


def settle_heap() -> int:
    """Make full collections rarer, collect, then exempt every object alive now from later
    collections; returns how many objects are exempt (frozen) in all."""
    young, middle, _full = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.debug("heap settled: %d objects exempt from the cyclic garbage collector", frozen)
    return frozen
