"""The GC's background loops are supervised (in-process GC, real gRPC and HTTP servers on
loopback, a real database): a loop whose step raises once is a crash — one ERROR record with its
traceback, `gc_task_crashes_total{task}` at 1, `/health/ready` 503 naming the task — and a
clean stop logs what became of every task."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from darktower.auth.keys import generate_key_files
from darktower.embedded.redis import free_port
from darktower.gc.server import GcApp
from darktower.gc.settings import GcSettings
from tests.support.injection import INJECTED, fail_once
from tests.support.waiting import eventually


def crashes(task: str) -> float:
    value = REGISTRY.get_sample_value("gc_task_crashes_total", {"task": task})
    assert value is not None, f"gc_task_crashes_total{{task={task!r}}} is not exported"
    return value


@pytest.fixture
async def gc(tmp_path: Path, database_url: str) -> AsyncIterator[GcApp]:
    generate_key_files(tmp_path)
    app = GcApp(
        GcSettings(
            id="gc-tasks",
            grpc_bind=f"127.0.0.1:{free_port()}",
            http_bind="127.0.0.1:0",
            database_url=database_url,
            service_key_file=tmp_path / "gc.key",
            trusted_mc_key_files=[tmp_path / "mc.pub"],
            trusted_mh_key_files=[tmp_path / "mh.pub"],
            # Each loop takes its next step soon.
            sweep_interval_seconds=0.1,
            staleness_seconds=60,
            heartbeat_flush_ms=50,
        )
    )
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def ready(gc: GcApp) -> tuple[int, dict[str, str]]:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"http://127.0.0.1:{gc.http_port}/health/ready")
    return response.status_code, response.json()


def inject(gc: GcApp, task: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next step of `task`'s loop raise RuntimeError once."""
    if task == "gc-sweeper":
        assert gc.sweeper is not None
        monkeypatch.setattr(gc.sweeper, "sweep_once", fail_once(gc.sweeper.sweep_once))
    elif task == "gc-heartbeats":
        assert gc.heartbeats is not None
        batcher = gc.heartbeats
        monkeypatch.setattr(batcher, "flush", fail_once(batcher.flush))
    elif task == "gc-load-reports":
        assert gc.load_reports is not None
        reports = gc.load_reports
        monkeypatch.setattr(reports, "flush", fail_once(reports.flush))
    elif task == "gc-http":
        assert gc._http is not None
        server = gc._http._server
        monkeypatch.setattr(server, "on_tick", fail_once(server.on_tick))
    else:
        raise AssertionError(task)


@pytest.mark.parametrize("task", ["gc-sweeper", "gc-heartbeats", "gc-load-reports", "gc-http"])
async def test_a_crashed_loop_is_logged_counted_and_makes_the_gc_not_ready(
    gc: GcApp, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, task: str
) -> None:
    assert await ready(gc) == (200, {"status": "ready"})
    before = crashes(task)
    with caplog.at_level(logging.INFO):
        inject(gc, task, monkeypatch)
        await eventually(lambda: bool(gc.tasks.failed), timeout=20, what=f"{task} crashed")
        reason = f"background task {task} crashed"
        assert await ready(gc) == (503, {"status": "not ready", "reason": reason})
        assert crashes(task) == before + 1
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert [r.getMessage() for r in errors] == [
            f"background task {task} crashed (RuntimeError): not ready"
        ]
        assert errors[0].exc_info is not None
        traceback = logging.Formatter().formatException(errors[0].exc_info)
        assert f"RuntimeError: {INJECTED}" in traceback
        assert "in step" in traceback  # down to the failing frame
        await gc.stop()
    [report] = [r.getMessage() for r in caplog.records if "stopped background tasks" in r.message]
    assert re.fullmatch(
        rf"stopped background tasks: \d+ cancelled, 1 failed, \d+ finished, "
        rf"0 still running \({task}\)",
        report,
    ), report
    assert crashes(task) == before + 1


async def test_a_clean_stop_logs_what_became_of_every_task(
    gc: GcApp, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        await gc.stop()
    [report] = [r for r in caplog.records if "stopped background tasks" in r.message]
    assert report.levelno == logging.INFO
    # The sweeper, the heartbeat and load report batchers and the gRPC health loop are
    # cancelled; the HTTP server finishes when told.
    assert report.getMessage() == (
        "stopped background tasks: 4 cancelled, 0 failed, 1 finished, 0 still running"
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
