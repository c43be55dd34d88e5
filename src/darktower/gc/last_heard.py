"""`LastHeard`: when this GC last received a heartbeat from each MC and a load report from each
MH — the staleness source that does not wait for the database.

Beats are written behind (`darktower.gc.heartbeats`) and load reports are written in their own
transaction; under a join flood those writes queue behind the joins' transactions, so the
database can hold a receipt time seconds older than the newest beat already received. Judging
staleness on the database alone then marks live MCs and MHs unhealthy and answers joins 503
`none_healthy` (issue 14, "join flood → false failover"). So the gRPC edge notes each receipt
here the moment its handler accepts it, and whoever judges staleness takes the fresher of the
two: the sweeper leaves alone every id heard from since its threshold, and placement reads the
registry through `controller` / `media_handler`.

In memory and per GC process: a beat received by another GC sharing the database is seen once
that GC writes it. At most `max_entries` ids per kind (oldest receipt first out); registration
forgets an id (a new life starts with no beat, PENDING).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Literal

from darktower.gc.domain import Controller, MediaHandler

__all__ = ["Kind", "LastHeard"]

Kind = Literal["mc", "mh"]


class LastHeard:
    """Receipt times by kind and id (see the module docstring)."""

    def __init__(self, *, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max = max_entries
        self._at: dict[Kind, dict[str, datetime]] = {"mc": {}, "mh": {}}

    def heard(self, kind: Kind, id: str, at: datetime) -> None:
        """`id` was heard from `at` (a receipt older than one already noted changes nothing)."""
        seen = self._at[kind]
        previous = seen.pop(id, None)
        seen[id] = at if previous is None or at > previous else previous
        if len(seen) > self._max:
            del seen[next(iter(seen))]

    def forget(self, kind: Kind, id: str) -> None:
        """`id` (re-)registered: what was heard from its previous life no longer counts."""
        self._at[kind].pop(id, None)

    def at(self, kind: Kind, id: str) -> datetime | None:
        return self._at[kind].get(id)

    def newest(self) -> datetime | None:
        """The newest receipt of any kind and id (None before the first)."""
        return max((at for seen in self._at.values() for at in seen.values()), default=None)

    def heard_since(self, kind: Kind, since: datetime) -> set[str]:
        """The ids of `kind` heard from at or after `since`."""
        return {id for id, at in self._at[kind].items() if at >= since}

    def controller(self, c: Controller) -> Controller:
        """`c` with its last heartbeat the newest received, if that is newer than stored."""
        heard = self.at("mc", c.id)
        if heard is None or (c.last_heartbeat_at is not None and c.last_heartbeat_at >= heard):
            return c
        return replace(c, last_heartbeat_at=heard)

    def media_handler(self, m: MediaHandler) -> MediaHandler:
        """`m` with its last load report the newest received, if newer than stored."""
        heard = self.at("mh", m.id)
        if heard is None or (m.last_report_at is not None and m.last_report_at >= heard):
            return m
        return replace(m, last_report_at=heard)
