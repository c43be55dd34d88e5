"""Re-placing a meeting on evidence, not only after silence (issue 16, "Crashes").

With the default 30 s staleness, a crashed MC keeps being named for its meetings until the
sweeper notices its silence. A client that cannot reach the MC the GC named (its WebSocket
connect refused or timed out) asks again with `unreachable_mc_id` naming that MC. The claim is
never trusted alone: the GC checks the MC itself (`EvidenceChecks.is_down`, a short authenticated
call, `McProbe`) and only if the MC does not answer is it marked UNHEALTHY (through
the `mark` it is given, which flushes pending heartbeats first), after which the join places the
meeting anew at once. A client that lies about a live MC costs one check and moves nothing.

A burst of such claims costs ONE check per MC: concurrent claims share the check in flight
(single-flight), and its result is kept for `cache_s` seconds for the claims that follow. The
cache is bounded by the number of MCs ever checked (registered MCs only: the join path checks
an MC only when it hosts the meeting's live assignment).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import grpc

from darktower.auth.client import ServiceTokenProvider
from darktower.gc.join.metrics import EVIDENCE_CHECKS, EVIDENCE_MARKS
from darktower.runtime.grpc_channels import channel_for
from darktower.runtime.tls import TlsConfig
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

__all__ = [
    "DEFAULT_CACHE_SECONDS",
    "DEFAULT_PROBE_SECONDS",
    "EvidenceChecks",
    "Mark",
    "McProbe",
    "Probe",
]

log = logging.getLogger(__name__)

DEFAULT_CACHE_SECONDS = 2.0
DEFAULT_PROBE_SECONDS = 1.0

Probe = Callable[[str, str], Awaitable[bool]]
"""(grpc endpoint, mc id) → True if the MC answered within the probe's deadline."""
Mark = Callable[[str], Awaitable[bool]]
"""mc id → mark it UNHEALTHY; True if it was not already."""


class EvidenceChecks:
    """One check per MC at a time, its result cached for `cache_s` (see the module docstring)."""

    def __init__(
        self,
        probe: Probe,
        mark: Mark,
        *,
        cache_s: float = DEFAULT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if cache_s < 0:
            raise ValueError("cache_s must not be negative")
        self._probe = probe
        self._mark = mark
        self._cache_s = cache_s
        self._clock = clock
        self._results: dict[str, tuple[float, bool]] = {}  # mc id → (checked at, down)
        self._running: dict[str, asyncio.Task[bool]] = {}

    async def is_down(self, mc_id: str, endpoint: str) -> bool:
        """Whether MC `mc_id` at `endpoint` is down, by a check of the GC's own (or the one in
        flight, or one made less than `cache_s` ago). A down MC is marked UNHEALTHY by the check
        that found it, once."""
        cached = self._results.get(mc_id)
        if cached is not None and self._clock() - cached[0] < self._cache_s:
            return cached[1]
        task = self._running.get(mc_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._check(mc_id, endpoint), name=f"gc-evidence-{mc_id}"
            )
            self._running[mc_id] = task
        # Shielded: a joiner that gives up does not cancel the check the others wait for.
        return await asyncio.shield(task)

    async def _check(self, mc_id: str, endpoint: str) -> bool:
        try:
            alive = await self._probe(endpoint, mc_id)
            EVIDENCE_CHECKS.labels("alive" if alive else "down").inc()
            if not alive and await self._mark(mc_id):
                EVIDENCE_MARKS.inc()
                log.warning(
                    "meeting controller %s marked unhealthy: a client could not reach it and "
                    "neither could this GC",
                    mc_id,
                )
            self._results[mc_id] = (self._clock(), not alive)
            return not alive
        finally:
            del self._running[mc_id]


class McProbe:
    """The GC's own check of an MC (a `Probe`): one authenticated call that changes nothing —
    the legacy `SendHeartbeat`, which every MC answers "not accepted" — with a token for that
    MC only, within `timeout` seconds, on a channel of its own (a channel reused for
    placement may still be backing off from an earlier failure and make a live MC look
    down). Any answer, even an error status from the MC, is alive; no connection
    (UNAVAILABLE) or no answer in time is down."""

    def __init__(
        self,
        tokens_for: Callable[[str], ServiceTokenProvider],
        *,
        gc_id: str,
        tls: TlsConfig | None = None,
        timeout: float = DEFAULT_PROBE_SECONDS,
    ) -> None:
        self._tokens_for = tokens_for
        self._providers: dict[str, ServiceTokenProvider] = {}
        self._gc_id = gc_id
        self._tls = tls
        self._timeout = timeout

    async def __call__(self, endpoint: str, mc_id: str) -> bool:
        provider = self._providers.get(mc_id)
        if provider is None:
            provider = self._providers[mc_id] = self._tokens_for(mc_id)
        try:
            channel = channel_for(endpoint, tls=self._tls)
        except ValueError:
            return False
        try:
            await pb_grpc.MeetingControllerServiceStub(channel).SendHeartbeat(
                pb.Heartbeat(controller_id=self._gc_id),
                metadata=provider.metadata(),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code() not in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            )
        finally:
            await channel.close(None)
        return True
