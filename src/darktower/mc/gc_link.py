"""The MC's link to the GC: registration, heartbeats, re-registration, meeting-end notices.

One supervising task runs, for as long as the process does:

    register (tenacity, RegistrationBackoff, no limit on tries; accepted=false is retried too)
      → beat: first fast and comprehensive beats at once, then every interval from the GC's
        answer (10 s / 30 s when it sends 0)
      → a beat answered NOT_FOUND (the GC forgot us) → back to register, same backoff
      any other beat failure is logged and counted; the loops go on.

`beat_now()` wakes the fast loop for a heartbeat right away; `send_fast_beat(timeout)` sends one
and waits for its answer (drain uses it, so that DRAINING reaches the GC before the MC stops).
`meeting_ended(id)` reports a meeting end (a few tries, then a log line); `flush(timeout)` waits
for the reports still in flight (drain does that before exiting).

Comprehensive beats carry the participants of every hosted meeting when a `meeting_loads`
callable is given (at most `MAX_MEETING_LOADS` entries; a longer list is cut, most
participants first, and the cut logged — the GC refuses longer lists).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
import psutil
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential

from darktower.common.backoff import RegistrationBackoff
from darktower.common.limits import MAX_MEETING_LOADS
from darktower.mc.controller import Capacity
from darktower.mc.gc_client import GcClient
from darktower.mc.metrics import (
    HEARTBEAT_LATENCY,
    HEARTBEATS,
    MEETING_END_NOTICES,
    REGISTERED,
    REGISTRATION_ATTEMPTS,
)
from darktower.runtime.supervisor import TaskSupervisor
from darktower.runtime.tls import describe_rpc_error
from darktower.wire.dark_tower import internal_pb2 as pb

__all__ = [
    "DEFAULT_COMPREHENSIVE_S",
    "DEFAULT_FAST_S",
    "GcLink",
    "MeetingLoads",
    "Registration",
    "machine_cpu_percent",
]

log = logging.getLogger(__name__)

DEFAULT_FAST_S = 10.0
DEFAULT_COMPREHENSIVE_S = 30.0
NOTICE_ATTEMPTS = 4

MeetingLoads = Callable[[], Sequence[tuple[str, int]]]
"""(meeting id, participants) of every meeting the MC hosts."""


def machine_cpu_percent(process_percent: float, cpus: int | None) -> float:
    """The process's CPU use as a share of the whole machine, 0 to 100 as the wire wants it.

    psutil counts one busy core as 100 %, so a process running threads on several cores reads
    above 100 (the GC refuses that heartbeat as INVALID_ARGUMENT); divided by the cores and
    clamped, it is the share of the machine."""
    share = process_percent / max(cpus or 1, 1)
    return min(max(share, 0.0), 100.0)


@dataclass(frozen=True, slots=True)
class Registration:
    """What the MC tells the GC about itself."""

    mc_id: str
    region: str
    grpc_endpoint: str
    client_endpoint: str
    max_meetings: int
    max_participants: int


class RegistrationRefused(Exception):
    """The GC answered accepted=false (its message is logged)."""


class ForgottenByGc(Exception):
    """A heartbeat was answered NOT_FOUND: register again."""


class GcLink:
    def __init__(
        self,
        client: GcClient,
        registration: Registration,
        *,
        capacity: Callable[[], Capacity],
        health: Callable[[], pb.HealthStatus.ValueType],
        backoff: RegistrationBackoff | None = None,
        meeting_loads: MeetingLoads | None = None,
    ) -> None:
        self._client = client
        self._meeting_loads = meeting_loads
        self._registration = registration
        self._capacity = capacity
        self._health = health
        self._backoff = backoff or RegistrationBackoff()
        self.registered = False
        self.fast_interval = DEFAULT_FAST_S
        self.comprehensive_interval = DEFAULT_COMPREHENSIVE_S
        self._beat_now = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._notices: set[asyncio.Task[None]] = set()
        self._stopped = False
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first reading is meaningless; prime it

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, tasks: TaskSupervisor | None = None) -> None:
        """Register and beat in task `gc-link` of `tasks` (the MC's; a private one if None):
        an unexpected error ends it, and the supervisor makes the MC not ready — it would
        otherwise stay `registered` without beating."""
        tasks = tasks or TaskSupervisor(["gc-link"])
        self._task = tasks.spawn("gc-link", self._run())

    async def stop(self) -> None:
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for notice in list(self._notices):
            notice.cancel()
        await asyncio.gather(*self._notices, return_exceptions=True)
        await self._client.aclose()
        self._set_registered(False)

    def beat_now(self) -> None:
        self._beat_now.set()

    async def send_fast_beat(self, timeout: float) -> None:
        """Send one fast heartbeat now and wait up to `timeout` seconds for its answer (drain:
        the GC must hear DRAINING before this MC stops). Nothing is sent while unregistered;
        a failure is counted and logged like any beat's."""
        if not self.registered:
            return
        with contextlib.suppress(TimeoutError, ForgottenByGc):
            await asyncio.wait_for(
                self._beat("fast", self._client.fast_heartbeat(self._fast_request())), timeout
            )

    # -- registration ----------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._register()
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._fast_loop())
                    group.create_task(self._comprehensive_loop())
            except* ForgottenByGc:
                log.warning("the GC does not know this MC (NOT_FOUND): registering again")
                self._set_registered(False)

    async def _register(self) -> None:
        r = self._registration
        request = pb.RegisterMCRequest(
            id=r.mc_id,
            region=r.region,
            grpc_endpoint=r.grpc_endpoint,
            webtransport_endpoint=r.client_endpoint,
            max_meetings=r.max_meetings,
            max_participants=r.max_participants,
        )
        retrying = AsyncRetrying(wait=self._backoff, before_sleep=self._log_retry, reraise=True)
        async for attempt in retrying:
            with attempt:
                try:
                    answer = await self._client.register(request)
                except grpc.aio.AioRpcError:
                    REGISTRATION_ATTEMPTS.labels("error").inc()
                    raise
                if not answer.accepted:
                    REGISTRATION_ATTEMPTS.labels("refused").inc()
                    log.warning("the GC refused the registration: %s", answer.message)
                    raise RegistrationRefused(answer.message)
                REGISTRATION_ATTEMPTS.labels("accepted").inc()
        self.fast_interval = answer.fast_heartbeat_interval_ms / 1000 or DEFAULT_FAST_S
        self.comprehensive_interval = (
            answer.comprehensive_heartbeat_interval_ms / 1000 or DEFAULT_COMPREHENSIVE_S
        )
        self._set_registered(True)
        log.info(
            "registered with the GC at %s (heartbeats every %.1fs / %.1fs)",
            self._client.endpoint,
            self.fast_interval,
            self.comprehensive_interval,
        )

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        if isinstance(exc, grpc.aio.AioRpcError):
            why = describe_rpc_error(self._client.endpoint, exc)
            if why != exc.code().name:  # a TLS problem: say it, naming the GC
                log.warning(
                    "cannot reach the GC at %s: %s; next attempt in %.1fs",
                    self._client.endpoint,
                    why,
                    wait,
                )
                return
        else:
            why = type(exc).__name__
        log.info(
            "registration attempt %d failed (%s); next in %.1fs", state.attempt_number, why, wait
        )

    def _set_registered(self, value: bool) -> None:
        self.registered = value
        REGISTERED.set(1 if value else 0)

    # -- heartbeats ------------------------------------------------------------------------

    def _capacity_message(self) -> pb.ControllerCapacity:
        c = self._capacity()
        return pb.ControllerCapacity(
            max_meetings=c.max_meetings,
            current_meetings=c.current_meetings,
            max_participants=c.max_participants,
            current_participants=c.current_participants,
        )

    def _fast_request(self) -> pb.FastHeartbeatRequest:
        return pb.FastHeartbeatRequest(
            controller_id=self._registration.mc_id,
            capacity=self._capacity_message(),
            health=self._health(),
        )

    async def _fast_loop(self) -> None:
        while True:
            self._beat_now.clear()
            await self._beat("fast", self._client.fast_heartbeat(self._fast_request()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat_now.wait(), self.fast_interval)

    async def _comprehensive_loop(self) -> None:
        while True:
            request = pb.ComprehensiveHeartbeatRequest(
                controller_id=self._registration.mc_id,
                capacity=self._capacity_message(),
                health=self._health(),
                cpu_usage_percent=machine_cpu_percent(
                    self._process.cpu_percent(None), psutil.cpu_count()
                ),
                memory_usage_percent=self._process.memory_percent(),
                meetings=self._meeting_load_messages(),
            )
            await self._beat("comprehensive", self._client.comprehensive_heartbeat(request))
            await asyncio.sleep(self.comprehensive_interval)

    def _meeting_load_messages(self) -> list[pb.MeetingLoad]:
        if self._meeting_loads is None:
            return []
        loads = list(self._meeting_loads())
        if len(loads) > MAX_MEETING_LOADS:
            log.warning(
                "reporting %d of %d meetings to the GC (the most participants first)",
                MAX_MEETING_LOADS,
                len(loads),
            )
            loads = sorted(loads, key=lambda load: -load[1])[:MAX_MEETING_LOADS]
        return [
            pb.MeetingLoad(meeting_id=meeting_id, participants=max(0, participants))
            for meeting_id, participants in loads
        ]

    async def _beat(self, kind: str, call: object) -> None:
        started = time.perf_counter()
        try:
            await call  # type: ignore[misc]
        except grpc.aio.AioRpcError as exc:
            HEARTBEATS.labels(kind, exc.code().name.lower()).inc()
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise ForgottenByGc() from exc
            log.warning("%s heartbeat failed: %s", kind, exc.code().name)
        else:
            HEARTBEATS.labels(kind, "ok").inc()
        finally:
            HEARTBEAT_LATENCY.labels(kind).observe(time.perf_counter() - started)

    # -- meeting ends ----------------------------------------------------------------------

    def meeting_ended(self, meeting_id: str) -> None:
        if self._stopped:  # its channel is closed: the GC learns by staleness and the next join
            MEETING_END_NOTICES.labels("failed").inc()
            log.warning("meeting %s ended after the GC link stopped: not reported", meeting_id)
            return
        # Short-lived, one per meeting end, owned here (flush and stop wait for them), so not
        # supervisor tasks; an error they do not expect is still logged with its traceback.
        task = asyncio.get_running_loop().create_task(
            self._notify_ended(meeting_id), name=f"meeting-end-notice {meeting_id}"
        )
        self._notices.add(task)
        task.add_done_callback(self._notice_done)

    def _notice_done(self, task: asyncio.Task[None]) -> None:
        self._notices.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            MEETING_END_NOTICES.labels("failed").inc()
            log.error("%s failed (%s)", task.get_name(), type(exc).__name__, exc_info=exc)

    async def _notify_ended(self, meeting_id: str) -> None:
        request = pb.NotifyMeetingEndedRequest(
            meeting_id=meeting_id, region=self._registration.region
        )
        retrying = AsyncRetrying(
            stop=stop_after_attempt(NOTICE_ATTEMPTS),
            wait=wait_exponential(multiplier=0.2, max=2),
            retry=retry_if_exception_type(grpc.aio.AioRpcError),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._client.notify_meeting_ended(request)
        except grpc.aio.AioRpcError as exc:
            MEETING_END_NOTICES.labels("failed").inc()
            log.warning(
                "could not tell the GC that meeting %s ended (%s)", meeting_id, exc.code().name
            )
        else:
            MEETING_END_NOTICES.labels("ok").inc()

    async def flush(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the meeting-end reports in flight."""
        if self._notices:
            await asyncio.wait(set(self._notices), timeout=timeout)
