"""Drain of a real `darktower mc` process registered with a (recording) GC, docs/reference.md
"Drain":
SIGTERM → a DRAINING heartbeat at once, no new meetings, every hosted meeting ended and
reported with NotifyMeetingEnded (a failed report retried), exit 0 within the drain deadline."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc
from tests.mc.processes import McProcess, McProcesses
from tests.mc.recording_gc import ENDED, FAST, Fail, RecordingGc
from tests.support.keys import token_provider
from tests.support.mc import assign_request

pytestmark = pytest.mark.slow

Metadata = tuple[tuple[str, str], ...]

DRAIN_SECONDS = 3.0
EXIT_MARGIN_SECONDS = 2.0


@pytest.fixture
def processes(tmp_path: Path, key_dir: Path) -> Iterator[McProcesses]:
    started = McProcesses(tmp_path, key_dir / "gc.pub")
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
async def gc(key_dir: Path) -> AsyncIterator[RecordingGc]:
    # Beats every 5 s: a DRAINING beat within 1 s of SIGTERM can only come from the drain.
    server = RecordingGc(key_dir, fast_ms=5000, comprehensive_ms=5000)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def assign(
    mc: McProcess, meeting_id: str, metadata: Metadata
) -> pb.AssignMeetingWithMhResponse:
    async with grpc.aio.insecure_channel(mc.grpc_target) as channel:
        stub = pb_grpc.MeetingControllerServiceStub(channel)
        return await stub.AssignMeetingWithMh(
            assign_request(meeting_id), metadata=metadata, timeout=5
        )


async def exit_code(mc: McProcess, *, within: float) -> int:
    """The exit code, waiting without blocking the loop (the GC serves the MC from it)."""
    deadline = time.monotonic() + within
    while (code := mc.proc.poll()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"MC still running after {within}s:\n{mc.log()}")
        await asyncio.sleep(0.05)
    return code


async def test_sigterm_drains_tells_the_gc_and_exits_zero(
    processes: McProcesses,
    gc: RecordingGc,
    redis_url: str,
    redis_client: Any,  # flushes the database first
    key_dir: Path,
) -> None:
    gc_metadata = token_provider(key_dir, "gc", audience="mc-drain").metadata()
    # Started in a thread: the GC on this loop must answer while the process comes up.
    mc = await asyncio.to_thread(
        processes.start,
        redis_url,
        id="mc-drain",
        gc_endpoint=gc.endpoint,
        service_key_file=str(key_dir / "mc.key"),
        drain_seconds=str(DRAIN_SECONDS),
        registration_backoff_base="0.05",
        registration_backoff_cap="0.5",
    )
    # The first fast beat follows the MC's own record of the registration: it is ready then.
    await gc.wait_for(
        lambda: gc.registrations and gc.fast_beats, timeout=15, what="registered and beating"
    )
    assert gc.registrations[0].id == "mc-drain"
    for meeting_id in ("drain-a", "drain-b"):
        answer = await assign(mc, meeting_id, gc_metadata)
        assert answer.accepted, mc.log()

    # A first notice that fails is retried 0.2 s later: the drain must wait for it (flush).
    gc.next(ENDED, Fail(grpc.StatusCode.UNAVAILABLE))
    signalled = time.monotonic()
    mc.send_signal(signal.SIGTERM)

    await gc.wait_for(
        lambda: any(r.request.health == pb.DRAINING for r in gc.calls(FAST, since=signalled)),
        timeout=1.0,
        what="a DRAINING fast beat within 1 s of SIGTERM",
    )
    draining = next(r for r in gc.calls(FAST, since=signalled) if r.request.health == pb.DRAINING)
    assert draining.at - signalled < 1.0
    assert draining.request.capacity.current_meetings == 2

    refused = await assign(mc, "too-late", gc_metadata)
    assert not refused.accepted
    assert refused.rejection_reason == pb.REJECTION_REASON_DRAINING

    await gc.wait_for(
        lambda: len(gc.ended_meetings) >= 2,
        timeout=DRAIN_SECONDS + EXIT_MARGIN_SECONDS,
        what="both meeting ends reported",
    )
    assert sorted(n.meeting_id for n in gc.ended_meetings) == ["drain-a", "drain-b"]
    assert {n.region for n in gc.ended_meetings} == {"test"}
    assert len(gc.calls(ENDED)) == 3

    left = DRAIN_SECONDS + EXIT_MARGIN_SECONDS - (time.monotonic() - signalled)
    assert await exit_code(mc, within=max(0.0, left)) == 0, mc.log()
    assert "Traceback" not in mc.log()
