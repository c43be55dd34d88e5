"""The MC's background loops are supervised (in-process MC, real gRPC/HTTP servers on loopback,
real Redis, a recording GC for the link): a loop whose step raises once is a crash — one ERROR
record with its traceback, `mc_task_crashes_total{task}` at 1, `/health/ready` 503 naming the
task, UNHEALTHY in the heartbeats' terms — and a clean stop logs what became of every task."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from darktower.wire.dark_tower import internal_pb2 as pb
from tests.mc.recording_gc import RecordingGc
from tests.support.injection import INJECTED, fail_once
from tests.support.mc import RunningMc
from tests.support.waiting import eventually

StartMc = Callable[..., Awaitable[RunningMc]]


def crashes(task: str) -> float:
    value = REGISTRY.get_sample_value("mc_task_crashes_total", {"task": task})
    assert value is not None, f"mc_task_crashes_total{{task={task!r}}} is not exported"
    return value


async def ready(mc: RunningMc) -> tuple[int, dict[str, str]]:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"{mc.health_url}/health/ready")
    return response.status_code, response.json()


@pytest.fixture
async def gc(key_dir: Path) -> AsyncIterator[RecordingGc]:
    server = RecordingGc(key_dir, fast_ms=100, comprehensive_ms=300)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def start_linked(start_mc: StartMc, gc: RecordingGc, key_dir: Path) -> RunningMc:
    mc = await start_mc(
        meeting_touch_seconds=0.1,  # the touch loop takes its next step soon
        gc_endpoint=gc.endpoint,
        service_key_file=key_dir / "mc.key",
        client_advertise="https://mc-test.example:4433",
        registration_backoff_base=0.05,
        registration_backoff_cap=0.2,
    )
    await eventually(
        lambda: mc.app.link is not None and mc.app.link.registered, timeout=10, what="registered"
    )
    return mc


def inject(mc: RunningMc, task: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next step of `task`'s loop raise RuntimeError once."""
    app = mc.app
    if task == "gc-link":
        assert app.link is not None
        monkeypatch.setattr(app.link, "_fast_request", fail_once(app.link._fast_request))
        app.link.beat_now()
    elif task == "redis-monitor":
        monkeypatch.setattr(app.monitor, "check", fail_once(app.monitor.check))
    elif task == "touch-loop":
        controller = app.controller
        monkeypatch.setattr(controller, "_touch_round", fail_once(controller._touch_round))
    elif task == "health-http":
        assert app._http is not None
        server = app._http._server
        monkeypatch.setattr(server, "on_tick", fail_once(server.on_tick))
    else:
        raise AssertionError(task)


@pytest.mark.parametrize("task", ["gc-link", "redis-monitor", "touch-loop", "health-http"])
async def test_a_crashed_loop_is_logged_counted_and_makes_the_mc_not_ready(
    start_mc: StartMc,
    gc: RecordingGc,
    key_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    task: str,
) -> None:
    mc = await start_linked(start_mc, gc, key_dir)
    assert await ready(mc) == (200, {"status": "ready"})
    before = crashes(task)
    with caplog.at_level(logging.INFO):
        inject(mc, task, monkeypatch)
        await eventually(lambda: bool(mc.app.tasks.failed), timeout=20, what=f"{task} crashed")
        reason = f"background task {task} crashed"
        assert await ready(mc) == (503, {"status": "not ready", "reason": reason})
        assert mc.app.ready() == (False, reason)
        assert mc.app.health() == pb.UNHEALTHY
        assert REGISTRY.get_sample_value("mc_ready") == 0
        assert crashes(task) == before + 1
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert [r.getMessage() for r in errors] == [
            f"background task {task} crashed (RuntimeError): not ready"
            if task != "gc-link"
            # The link's beats run in a TaskGroup, which wraps what ends them.
            else f"background task {task} crashed (ExceptionGroup): not ready"
        ]
        assert errors[0].exc_info is not None
        traceback = logging.Formatter().formatException(errors[0].exc_info)
        assert f"RuntimeError: {INJECTED}" in traceback
        assert "in step" in traceback  # down to the failing frame
        await mc.app.stop(deadline_seconds=2)
    [report] = [r.getMessage() for r in caplog.records if "stopped background tasks" in r.message]
    assert re.fullmatch(
        rf"stopped background tasks: \d+ cancelled, 1 failed, \d+ finished, "
        rf"0 still running \({task}\)",
        report,
    ), report
    assert crashes(task) == before + 1  # counted once, also after the stop


async def test_a_clean_stop_logs_what_became_of_every_task(
    start_mc: StartMc, gc: RecordingGc, key_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mc = await start_linked(start_mc, gc, key_dir)
    with caplog.at_level(logging.INFO):
        await mc.app.stop(deadline_seconds=2)
    [report] = [r for r in caplog.records if "stopped background tasks" in r.message]
    assert report.levelno == logging.INFO
    counts = re.fullmatch(
        r"stopped background tasks: (\d+) cancelled, 0 failed, (\d+) finished, 0 still running",
        report.getMessage(),
    )
    assert counts is not None, report.getMessage()
    # gc-link, redis-monitor, touch-loop, the gRPC health loop and the media watch are
    # cancelled (the monitor may see its stop flag first and return); the health server
    # finishes when told to.
    assert int(counts[1]) + int(counts[2]) == 6
    assert int(counts[2]) >= 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert mc.app.ready() == (False, "draining")


async def test_a_meeting_end_notice_that_fails_unexpectedly_is_logged_with_its_traceback(
    start_mc: StartMc,
    gc: RecordingGc,
    key_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The notices are not supervised (short-lived, owned by the link): a bug in one is logged
    # and counted as a failed notice, and the MC stays ready.
    mc = await start_linked(start_mc, gc, key_dir)
    link = mc.app.link
    assert link is not None
    monkeypatch.setattr(link._client, "notify_meeting_ended", fail_once(lambda request: None))
    with caplog.at_level(logging.ERROR):
        link.meeting_ended("standup")
        await link.flush(timeout=10)
        await eventually(lambda: bool(caplog.records), timeout=10, what="logged")
    [record] = caplog.records
    assert record.getMessage() == "meeting-end-notice standup failed (RuntimeError)"
    assert record.exc_info is not None and str(record.exc_info[1]) == INJECTED
    assert mc.app.ready() == (True, "")


async def test_a_meeting_that_ends_after_the_link_stopped_is_a_warning_not_a_crash(
    start_mc: StartMc, gc: RecordingGc, key_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Seen in a full run: a meeting fenced out during shutdown tried to report on the closed
    # channel and logged an ERROR with grpc's UsageError.
    mc = await start_linked(start_mc, gc, key_dir)
    link = mc.app.link
    assert link is not None
    await link.stop()
    with caplog.at_level(logging.WARNING):
        link.meeting_ended("late")
        await link.flush(timeout=5)
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert messages == [
        (logging.WARNING, "meeting late ended after the GC link stopped: not reported")
    ]
