"""The task supervisor on its own: a crash is logged once with its traceback, counted and makes
the service not ready; `stop` cancels, waits at most its deadline, and reports."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import CollectorRegistry, Counter

from darktower.runtime.supervisor import StopReport, TaskSupervisor

NAMES = ("loop", "server", "stubborn")


@pytest.fixture
def crashes() -> Counter:
    return Counter("test_task_crashes_total", "test", ["task"], registry=CollectorRegistry())


def count(crashes: Counter, name: str) -> float | None:
    """The counter's value for `name`; None when the series does not exist."""
    for metric in crashes.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels == {"task": name}:
                return sample.value
    return None


async def forever() -> None:
    await asyncio.Event().wait()


async def wait_done(task: asyncio.Task[None]) -> None:
    # The supervisor's done callback was added first, so it has run when this wakes.
    await asyncio.wait_for(asyncio.wait([task]), 10)


def test_every_known_name_is_counted_from_zero(crashes: Counter) -> None:
    assert count(crashes, "loop") is None
    TaskSupervisor(NAMES, crashes=crashes)
    assert {name: count(crashes, name) for name in NAMES} == dict.fromkeys(NAMES, 0.0)


async def test_an_unknown_name_is_refused(crashes: Counter) -> None:
    tasks = TaskSupervisor(NAMES, crashes=crashes)
    with pytest.raises(ValueError, match="unknown background task 'other'"):
        tasks.spawn("other", forever())


async def test_a_crash_is_logged_once_with_its_traceback_counted_and_not_ready(
    crashes: Counter, caplog: pytest.LogCaptureFixture
) -> None:
    tasks = TaskSupervisor(NAMES, crashes=crashes)

    async def step() -> None:
        raise RuntimeError("boom")

    async def loop() -> None:
        await asyncio.sleep(0)
        await step()

    assert tasks.not_ready_reason() is None
    with caplog.at_level(logging.ERROR, logger="darktower.runtime.supervisor"):
        await wait_done(tasks.spawn("loop", loop()))
    assert tasks.failed == ("loop",)
    assert tasks.not_ready_reason() == "background task loop crashed"
    assert count(crashes, "loop") == 1
    assert count(crashes, "server") == 0
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert "background task loop crashed (RuntimeError)" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    assert "in step" in caplog.text  # the traceback reaches the failing frame
    report = await tasks.stop(1)
    assert report == StopReport(failed=("loop",))
    assert len(caplog.records) == 1  # stop does not log it again


async def test_a_loop_that_returns_by_itself_is_a_crash(crashes: Counter) -> None:
    tasks = TaskSupervisor(NAMES, crashes=crashes)

    async def returns() -> None:
        return

    await wait_done(tasks.spawn("loop", returns()))
    assert tasks.not_ready_reason() == "background task loop crashed"
    assert count(crashes, "loop") == 1


async def test_a_task_allowed_to_finish_is_not_a_crash(crashes: Counter) -> None:
    tasks = TaskSupervisor(NAMES, crashes=crashes)

    async def returns() -> None:
        return

    await wait_done(tasks.spawn("server", returns(), may_finish=True))
    assert tasks.not_ready_reason() is None
    assert (await tasks.stop(1)) == StopReport(finished=("server",))


async def test_two_crashed_tasks_are_both_named(crashes: Counter) -> None:
    tasks = TaskSupervisor(NAMES, crashes=crashes)

    async def fails() -> None:
        raise RuntimeError("boom")

    await wait_done(tasks.spawn("loop", fails()))
    await wait_done(tasks.spawn("server", fails(), may_finish=True))
    assert tasks.not_ready_reason() == "background tasks loop, server crashed"


async def test_stop_cancels_the_running_tasks_and_reports_them(crashes: Counter) -> None:
    tasks = TaskSupervisor(NAMES, crashes=crashes)
    loop = tasks.spawn("loop", forever())
    server = tasks.spawn("server", forever(), may_finish=True)
    report = await tasks.stop(5)
    assert loop.cancelled() and server.cancelled()
    assert report == StopReport(cancelled=("loop", "server"))
    assert report.summary() == "2 cancelled, 0 failed, 0 finished, 0 still running"
    assert tasks.not_ready_reason() is None
    assert count(crashes, "loop") == 0


async def test_a_task_cancelled_by_its_owner_is_reported_cancelled(crashes: Counter) -> None:
    tasks = TaskSupervisor(NAMES, crashes=crashes)
    loop = tasks.spawn("loop", forever())
    loop.cancel()
    await asyncio.wait([loop])
    assert (await tasks.stop(1)) == StopReport(cancelled=("loop",))


async def test_a_loop_that_returns_once_stopping_is_finished(crashes: Counter) -> None:
    tasks = TaskSupervisor(NAMES, crashes=crashes)

    async def swallows_cancel() -> None:
        try:
            await forever()
        except asyncio.CancelledError:
            return

    tasks.spawn("loop", swallows_cancel())
    await asyncio.sleep(0)
    assert (await tasks.stop(5)) == StopReport(finished=("loop",))
    assert count(crashes, "loop") == 0


async def test_a_task_ignoring_cancellation_is_reported_not_waited_for(
    crashes: Counter,
) -> None:
    tasks = TaskSupervisor(NAMES, crashes=crashes)
    release = asyncio.Event()
    cancelled = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                cancelled.set()

    task = tasks.spawn("stubborn", stubborn(), may_finish=True)
    tasks.spawn("loop", forever())
    await asyncio.sleep(0)
    started = asyncio.get_running_loop().time()
    report = await asyncio.wait_for(tasks.stop(0.2), 10)
    assert asyncio.get_running_loop().time() - started < 5
    assert cancelled.is_set()
    assert report == StopReport(cancelled=("loop",), still_running=("stubborn",))
    assert report.summary() == "1 cancelled, 0 failed, 0 finished, 1 still running (stubborn)"
    release.set()
    await asyncio.wait_for(task, 10)


async def test_nothing_is_spawned_after_stop(crashes: Counter) -> None:
    tasks = TaskSupervisor(NAMES, crashes=crashes)
    await tasks.stop(1)
    with pytest.raises(RuntimeError, match="stopping"):
        tasks.spawn("loop", forever())
