"""The MC's link to the GC over real gRPC on loopback (docs/reference.md "Registration and
heartbeats"):
what it registers, when it beats and what the beats say, how it rides out a GC that refuses,
fails, forgets it or is not there yet, and how meeting ends are reported."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import httpx
import pytest
from prometheus_client import REGISTRY

from darktower.auth.errors import FAILURE_REASONS, WRONG_CALLER
from darktower.auth.tokens import SCOPE_GC, ServiceType
from darktower.mc.controller import Abort, EndAll, SetDraining
from darktower.mc.gc_link import machine_cpu_percent
from darktower.wire.dark_tower import internal_pb2 as pb
from tests.mc.recording_gc import (
    ANSWER,
    COMPREHENSIVE,
    ENDED,
    FAST,
    REGISTER,
    Answer,
    Fail,
    Received,
    RecordingGc,
    Refuse,
)
from tests.support.mc import RunningMc

StartMc = Callable[..., Awaitable[RunningMc]]

CLIENT_URL = "https://mc-test.example:4433"
UNAVAILABLE = Fail(grpc.StatusCode.UNAVAILABLE)
NOT_FOUND = Fail(grpc.StatusCode.NOT_FOUND, "unknown controller")


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def auth_failures() -> float:
    """Calls the GC's interceptor refused, whatever the reason."""
    return sum(
        metric("service_auth_failures_total", service="gc", reason=reason)
        for reason in (*FAILURE_REASONS, WRONG_CALLER)
    )


async def metric_reaches(name: str, target: float, *, timeout: float, **labels: str) -> None:
    """Wait until the metric is at least `target` (the GC records a call before the MC has
    its answer, so the MC's count of a call may lag the GC's record of it)."""
    deadline = time.monotonic() + timeout
    while (value := metric(name, **labels)) < target:
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}{labels} = {value}, not {target} within {timeout}s")
        await asyncio.sleep(0.02)


@pytest.fixture
async def gc(key_dir: Path) -> AsyncIterator[RecordingGc]:
    server = RecordingGc(key_dir, fast_ms=100, comprehensive_ms=300)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def start_linked(start_mc: StartMc, gc: RecordingGc, key_dir: Path) -> StartMc:
    """Start an in-process MC that registers with `gc` (fast registration backoff)."""

    async def start(**overrides: Any) -> RunningMc:
        values: dict[str, Any] = {
            "gc_endpoint": gc.endpoint,
            "service_key_file": key_dir / "mc.key",
            "client_advertise": CLIENT_URL,
            "registration_backoff_base": 0.05,
            "registration_backoff_cap": 0.2,
        }
        values.update(overrides)
        return await start_mc(**values)

    return start


async def registered(gc: RecordingGc, mc: RunningMc, *, count: int = 1) -> Received:
    """Wait for the `count`-th accepted registration and the MC to know it; that call."""
    await gc.wait_for(
        lambda: len(gc.registrations) >= count, timeout=10, what=f"registered {count}x"
    )
    deadline = time.monotonic() + 2
    while not (mc.app.link is not None and mc.app.link.registered):
        assert time.monotonic() < deadline, "the GC accepted, the MC does not know it"
        await asyncio.sleep(0.01)
    return [r for r in gc.calls(REGISTER) if r.outcome == ANSWER][count - 1]


async def ready_status(mc: RunningMc) -> tuple[int, dict[str, str]]:
    async with httpx.AsyncClient(timeout=2) as client:
        response = await client.get(f"{mc.health_url}/health/ready")
    return response.status_code, response.json()


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout}s")
        await asyncio.sleep(0.05)


# -- registration ----------------------------------------------------------------------------


async def test_registration_says_who_where_and_how_much_with_an_mc_token(
    gc: RecordingGc, start_linked: StartMc
) -> None:
    mc = await start_linked(max_meetings=7, max_participants=70)
    call = await registered(gc, mc)
    request = call.request
    assert isinstance(request, pb.RegisterMCRequest)
    assert request.id == "mc-test"
    assert request.region == "test"
    assert request.grpc_endpoint == f"http://127.0.0.1:{mc.app.grpc_port}"
    assert request.webtransport_endpoint == CLIENT_URL
    assert (request.max_meetings, request.max_participants) == (7, 70)
    # The call reached the servicer through the real interceptor: these are verified claims.
    assert call.claims is not None
    assert call.claims.service_type == ServiceType.MEETING_CONTROLLER
    assert call.claims.scope == SCOPE_GC
    assert call.claims.issuer == "mc-test"
    assert len(gc.calls(REGISTER)) == 1


async def test_a_token_the_gc_does_not_trust_never_registers(
    gc: RecordingGc, start_linked: StartMc, key_dir: Path
) -> None:
    refused = auth_failures()
    errors = metric("mc_registration_attempts_total", result="error")
    # Signed with the MH key: a well-formed token the GC (trusting mc.pub only) must refuse.
    mc = await start_linked(service_key_file=key_dir / "mh.key")
    await metric_reaches("mc_registration_attempts_total", errors + 3, timeout=5, result="error")
    assert gc.received == []
    assert auth_failures() >= refused + 3
    assert mc.app.link is not None and not mc.app.link.registered
    status, body = await ready_status(mc)
    assert (status, body["reason"]) == (503, "not registered with the GC")


async def test_wildcard_bind_advertises_a_host_name_not_0_0_0_0(
    gc: RecordingGc, start_linked: StartMc
) -> None:
    mc = await start_linked(grpc_bind="0.0.0.0:0")
    request = (await registered(gc, mc)).request
    url = urlsplit(request.grpc_endpoint)
    assert "0.0.0.0" not in request.grpc_endpoint
    assert url.scheme == "http"
    assert url.hostname == socket.getfqdn()
    assert url.hostname not in ("", "::", "0.0.0.0")
    assert url.port == mc.app.grpc_port != 0


@pytest.mark.parametrize(
    ("advertise", "expected"),
    [
        ("mc-7.internal:7000", "http://mc-7.internal:7000"),
        ("https://mc-7.example.com:443", "https://mc-7.example.com:443"),
    ],
)
async def test_grpc_advertise_is_what_the_gc_is_told(
    gc: RecordingGc, start_linked: StartMc, advertise: str, expected: str
) -> None:
    mc = await start_linked(grpc_bind="0.0.0.0:0", grpc_advertise=advertise)
    assert (await registered(gc, mc)).request.grpc_endpoint == expected


# -- heartbeat schedule ----------------------------------------------------------------------


async def test_beats_follow_the_intervals_the_gc_answered(
    gc: RecordingGc, start_linked: StartMc
) -> None:
    window = 1.5
    mc = await start_linked()
    start = (await registered(gc, mc)).at
    await asyncio.sleep(window + 0.2)
    assert mc.app.link is not None
    assert (mc.app.link.fast_interval, mc.app.link.comprehensive_interval) == (0.1, 0.3)
    fast = [r for r in gc.calls(FAST, since=start) if r.at <= start + window]
    comprehensive = [r for r in gc.calls(COMPREHENSIVE, since=start) if r.at <= start + window]
    assert 10 <= len(fast) <= 20, gc.summary()
    assert 3 <= len(comprehensive) <= 7, gc.summary()


async def test_zero_intervals_mean_the_defaults(gc: RecordingGc, start_linked: StartMc) -> None:
    gc.fast_ms = gc.comprehensive_ms = 0
    mc = await start_linked()
    start = (await registered(gc, mc)).at
    await gc.wait_for(lambda: gc.fast_beats and gc.comprehensive_beats, timeout=2, what="beats")
    await asyncio.sleep(0.5)
    assert mc.app.link is not None
    assert mc.app.link.fast_interval == 10.0
    assert mc.app.link.comprehensive_interval == 30.0
    assert len(gc.calls(FAST, since=start)) == 1
    assert len(gc.calls(COMPREHENSIVE, since=start)) == 1


async def test_no_beat_before_an_accepted_registration_then_both_at_once(
    gc: RecordingGc, start_linked: StartMc
) -> None:
    # Long intervals: first beats within 0.5 s can only be the immediate ones.
    gc.fast_ms = gc.comprehensive_ms = 5000
    gc.next(REGISTER, Refuse("GC is starting"), UNAVAILABLE)
    refused = metric("mc_registration_attempts_total", result="refused")
    errors = metric("mc_registration_attempts_total", result="error")
    mc = await start_linked(registration_backoff_base=0.1, registration_backoff_cap=1.0)
    accepted = await registered(gc, mc)
    await gc.wait_for(
        lambda: gc.fast_beats and gc.comprehensive_beats, timeout=2, what="first beats"
    )
    attempts = gc.calls(REGISTER)
    assert [type(r.outcome).__name__ for r in attempts] == ["Refuse", "Fail", "Answer"]
    assert attempts[2] is accepted
    # MC_REGISTRATION_BACKOFF_BASE=0.1: [0.05, 0.1] s after the 1st, [0.1, 0.2] s after the 2nd
    # (the 1 s default would wait at least 0.5 s).
    assert 0.05 <= attempts[1].at - attempts[0].at < 0.45
    assert 0.1 <= attempts[2].at - attempts[1].at < 0.45
    beats = gc.calls(FAST) + gc.calls(COMPREHENSIVE)
    assert all(b.at > accepted.at for b in beats), gc.summary()
    assert gc.calls(FAST)[0].at - accepted.at < 0.5
    assert gc.calls(COMPREHENSIVE)[0].at - accepted.at < 0.5
    assert metric("mc_registration_attempts_total", result="refused") == refused + 1
    assert metric("mc_registration_attempts_total", result="error") == errors + 1


async def test_gc_absent_at_start_then_registers_when_it_appears(
    gc: RecordingGc, start_linked: StartMc
) -> None:
    port = gc.port
    await gc.stop()  # nothing listens at the GC endpoint any more
    errors = metric("mc_registration_attempts_total", result="error")
    mc = await start_linked()

    status, body = await ready_status(mc)
    assert (status, body["reason"]) == (503, "not registered with the GC")
    refused = await mc.assign("too-early")
    assert not refused.accepted
    assert refused.rejection_reason == pb.REJECTION_REASON_UNHEALTHY
    await metric_reaches("mc_registration_attempts_total", errors + 3, timeout=5, result="error")
    assert gc.received == []

    await gc.start(port)
    await registered(gc, mc)
    await eventually(
        lambda: _is_ready(mc), timeout=2, what="ready once registered with the late GC"
    )
    assert (await mc.assign("on-time")).accepted


async def _is_ready(mc: RunningMc) -> bool:
    return (await ready_status(mc))[0] == 200


# -- the GC forgets, fails or vanishes -------------------------------------------------------


async def test_not_found_sends_the_mc_back_to_registration_until_accepted(
    gc: RecordingGc, start_linked: StartMc
) -> None:
    mc = await start_linked()
    await registered(gc, mc)
    await gc.wait_for(lambda: gc.fast_beats, timeout=2, what="beating")
    assert metric("mc_registered") == 1
    not_found = metric("mc_heartbeats_total", type="fast", result="not_found")
    # The MC's own gauge, sampled as each call reaches the GC.
    gauge: dict[int, float] = {}
    gc.observers.append(lambda r: gauge.__setitem__(id(r), metric("mc_registered")))
    gc.next(REGISTER, UNAVAILABLE, Refuse("still recovering"))
    gc.next(FAST, NOT_FOUND)

    second = await registered(gc, mc, count=2)
    await gc.wait_for(
        lambda: gc.calls(FAST, since=second.at) and gc.calls(COMPREHENSIVE, since=second.at),
        timeout=2,
        what="beating again",
    )
    forgotten = next(r for r in gc.calls(FAST) if r.outcome == NOT_FOUND)
    again = gc.calls(REGISTER, since=forgotten.at)
    assert [r.outcome for r in again] == [UNAVAILABLE, Refuse("still recovering"), ANSWER]
    assert again[2] is second
    assert metric("mc_heartbeats_total", type="fast", result="not_found") == not_found + 1
    # mc_registered: 1 when forgotten, 0 through the re-registration attempts, 1 after.
    assert gauge[id(forgotten)] == 1
    assert [gauge[id(r)] for r in again] == [0, 0, 0]
    assert {gauge[id(r)] for r in gc.calls(FAST, since=second.at)} == {1}
    assert metric("mc_registered") == 1
    assert (await ready_status(mc))[0] == 200


async def test_other_heartbeat_failures_are_counted_and_the_loop_goes_on(
    gc: RecordingGc, start_linked: StartMc
) -> None:
    mc = await start_linked()
    await registered(gc, mc)
    await gc.wait_for(lambda: gc.fast_beats, timeout=2, what="beating")
    unavailable = metric("mc_heartbeats_total", type="fast", result="unavailable")
    ok = metric("mc_heartbeats_total", type="fast", result="ok")
    since = time.monotonic()
    gc.next(FAST, UNAVAILABLE, UNAVAILABLE, UNAVAILABLE)
    await gc.wait_for(
        lambda: len([r for r in gc.calls(FAST, since=since) if r.answered]) >= 3,
        timeout=3,
        what="fast beats succeeding after the failures",
    )
    failed = [r for r in gc.calls(FAST, since=since) if not r.answered]
    assert len(failed) == 3
    assert metric("mc_heartbeats_total", type="fast", result="unavailable") == unavailable + 3
    await metric_reaches("mc_heartbeats_total", ok + 3, timeout=1, type="fast", result="ok")
    assert len(gc.calls(REGISTER)) == 1
    assert mc.app.link is not None and mc.app.link.registered


async def test_a_gc_that_vanishes_and_returns_gets_beats_again_without_reregistration(
    gc: RecordingGc, start_linked: StartMc
) -> None:
    mc = await start_linked()
    await registered(gc, mc)
    await gc.wait_for(lambda: gc.fast_beats, timeout=2, what="beating")
    unavailable = metric("mc_heartbeats_total", type="fast", result="unavailable")
    await gc.stop()
    await metric_reaches(
        "mc_heartbeats_total", unavailable + 2, timeout=3, type="fast", result="unavailable"
    )
    back = time.monotonic()
    await gc.start(gc.port)
    await gc.wait_for(
        lambda: gc.calls(FAST, since=back) and gc.calls(COMPREHENSIVE, since=back),
        timeout=10,
        what="beats reaching the returned GC",
    )
    assert len(gc.calls(REGISTER)) == 1
    assert mc.app.link is not None and mc.app.link.registered


# -- what the beats say ----------------------------------------------------------------------


async def test_beats_report_the_hosted_meetings_and_the_limits(
    gc: RecordingGc, start_linked: StartMc
) -> None:
    mc = await start_linked(max_meetings=100, max_participants=5000)
    await registered(gc, mc)
    for i in range(3):
        assert (await mc.assign(f"m-{i}")).accepted
    since = time.monotonic()
    await gc.wait_for(
        lambda: (
            any(r.request.capacity.current_meetings == 3 for r in gc.calls(FAST, since=since))
            and any(
                r.request.capacity.current_meetings == 3
                for r in gc.calls(COMPREHENSIVE, since=since)
            )
        ),
        timeout=3,
        what="beats reporting 3 meetings",
    )
    fast, comprehensive = gc.fast_beats[-1], gc.comprehensive_beats[-1]
    for beat in (fast, comprehensive):
        assert beat.controller_id == "mc-test"
        assert beat.capacity == pb.ControllerCapacity(
            max_meetings=100, current_meetings=3, max_participants=5000, current_participants=0
        )
        assert beat.health == pb.HEALTHY
    assert comprehensive.cpu_usage_percent >= 0
    assert comprehensive.memory_usage_percent > 0


async def test_beats_say_degraded_at_80_percent_and_draining_when_draining(
    gc: RecordingGc, start_linked: StartMc
) -> None:
    mc = await start_linked(max_meetings=5)
    await registered(gc, mc)

    async def beats_say(health: pb.HealthStatus.ValueType, meetings: int) -> None:
        since = time.monotonic()
        await gc.wait_for(
            lambda: all(
                any(
                    r.request.health == health and r.request.capacity.current_meetings == meetings
                    for r in gc.calls(rpc, since=since)
                )
                for rpc in (FAST, COMPREHENSIVE)
            ),
            timeout=3,
            what=f"beats saying {pb.HealthStatus.Name(health)} with {meetings} meetings",
        )

    for i in range(3):
        assert (await mc.assign(f"m-{i}")).accepted
    await beats_say(pb.HEALTHY, 3)  # 60 %
    assert (await mc.assign("m-3")).accepted
    await beats_say(pb.DEGRADED, 4)  # 80 %
    mc.app.controller.send(SetDraining())
    await beats_say(pb.DRAINING, 4)


async def test_beat_now_reports_draining_at_once(gc: RecordingGc, start_linked: StartMc) -> None:
    gc.fast_ms = gc.comprehensive_ms = 5000
    mc = await start_linked()
    await registered(gc, mc)
    await gc.wait_for(lambda: gc.fast_beats, timeout=2, what="the first fast beat")
    assert mc.app.link is not None
    mc.app.controller.send(SetDraining())

    async def draining() -> bool:  # the actor has handled the message
        return mc.app.controller.draining

    await eventually(draining, timeout=5, what="the MC draining")
    since = time.monotonic()
    mc.app.link.beat_now()
    await gc.wait_for(
        lambda: any(r.request.health == pb.DRAINING for r in gc.calls(FAST, since=since)),
        timeout=0.5,
        what="a DRAINING fast beat right after beat_now()",
    )


# -- meeting ends ----------------------------------------------------------------------------


async def test_ended_meetings_are_reported_and_a_failed_notice_is_retried(
    gc: RecordingGc, start_linked: StartMc
) -> None:
    mc = await start_linked(region="eu-west")
    await registered(gc, mc)
    assert (await mc.assign("standup")).accepted
    assert (await mc.assign("retro")).accepted
    ok = metric("mc_meeting_end_notices_total", result="ok")
    gc.next(ENDED, UNAVAILABLE)
    mc.app.controller.send(EndAll("test"))
    await gc.wait_for(
        lambda: len(gc.ended_meetings) == 2, timeout=5, what="both meeting ends acknowledged"
    )
    assert sorted(n.meeting_id for n in gc.ended_meetings) == ["retro", "standup"]
    assert {n.region for n in gc.ended_meetings} == {"eu-west"}
    calls = gc.calls(ENDED)
    assert len(calls) == 3 and calls[0].outcome == UNAVAILABLE
    assert calls[0].request.meeting_id in {"standup", "retro"}
    await metric_reaches("mc_meeting_end_notices_total", ok + 2, timeout=1, result="ok")
    assert metric("mc_meeting_end_notices_total", result="ok") == ok + 2
    assert mc.app.controller.meetings == {}


async def test_a_notice_the_gc_keeps_failing_is_given_up_and_counted(
    gc: RecordingGc, start_linked: StartMc
) -> None:
    mc = await start_linked()
    await registered(gc, mc)
    assert (await mc.assign("doomed")).accepted
    failed = metric("mc_meeting_end_notices_total", result="failed")
    gc.always(ENDED, UNAVAILABLE)
    mc.app.controller.send(EndAll("test"))
    await metric_reaches("mc_meeting_end_notices_total", failed + 1, timeout=5, result="failed")
    assert [r.request.meeting_id for r in gc.calls(ENDED)] == ["doomed"] * 4
    assert gc.ended_meetings == []
    # The link is unharmed: heartbeats go on.
    since = time.monotonic()
    await gc.wait_for(lambda: gc.calls(FAST, since=since), timeout=2, what="beating on")


async def test_drain_with_nothing_hosted_still_tells_the_gc_draining(
    gc: RecordingGc, start_linked: StartMc
) -> None:
    """Nothing to wait for, so the drain stops at once: the DRAINING beat must get out first."""
    gc.fast_ms = gc.comprehensive_ms = 5000
    ok = metric("mc_heartbeats_total", type="fast", result="ok")
    mc = await start_linked()
    await registered(gc, mc)
    await metric_reaches("mc_heartbeats_total", ok + 1, timeout=2, type="fast", result="ok")
    # Work already queued in the controller's mailbox when SIGTERM arrives (cheap no-ops):
    # the beat must still read the health after the controller took DRAINING in.
    for i in range(200):
        mc.app.controller.send(Abort(f"not-admitting-{i}"))
    # A GC a little slow to answer: the drain must wait for it (up to 1 s of a 4 s budget).
    gc.next(FAST, Answer(delay=0.1))
    since = time.monotonic()
    await asyncio.wait_for(mc.app.drain(deadline_seconds=4), 5)
    # Answered before the MC stopped, not merely sent.
    assert metric("mc_heartbeats_total", type="fast", result="ok") == ok + 2
    beats = gc.calls(FAST, since=since)
    assert [pb.HealthStatus.Name(b.request.health) for b in beats] == ["DRAINING"], gc.summary()
    assert beats[0].at - since < 0.5


@pytest.mark.parametrize(
    ("process_percent", "cpus", "expected"),
    [
        (0.0, 2, 0.0),
        (50.0, 1, 50.0),
        (150.0, 2, 75.0),  # threads busy on two cores: psutil reads above 100
        (200.0, 2, 100.0),
        (350.0, 2, 100.0),  # a reading past the cores (sampling jitter) is clamped
        (80.0, None, 80.0),  # cpu_count unknown: taken as one core
        (-1.0, 4, 0.0),
    ],
)
def test_cpu_is_reported_as_a_share_of_the_machine(
    process_percent: float, cpus: int | None, expected: float
) -> None:
    assert machine_cpu_percent(process_percent, cpus) == expected
