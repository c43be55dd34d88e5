"""The staleness sweeper against the real store, on a clock moved by hand."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from darktower.embedded.redis import free_port
from darktower.gc.domain import Health, Heartbeat
from darktower.gc.store import DatabaseUnavailable, GcStore, create_engine
from darktower.gc.sweeper import StalenessSweeper, SweepResult

T0 = datetime(2030, 1, 1, tzinfo=UTC)
REGION = "eu-west"
STALENESS_S = 30.0
RETENTION_S = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def at(self, seconds: float) -> datetime:
        self.now = T0 + timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sweeper(store: GcStore, clock: Clock) -> StalenessSweeper:
    return StalenessSweeper(
        store, staleness_s=STALENESS_S, interval_s=0.05, retention_s=RETENTION_S, clock=clock
    )


def sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    assert value is not None, f"{name}{labels} is created up front"
    return value


async def register_mc(store: GcStore, mc_id: str, at: float) -> None:
    await store.upsert_controller(
        mc_id, REGION, f"http://{mc_id}:50052", None, 100, 1000, T0 + timedelta(seconds=at)
    )


async def beat(store: GcStore, mc_id: str, at: float, health: Health = Health.HEALTHY) -> None:
    await store.record_heartbeat(
        Heartbeat(
            mc_id,
            current_meetings=1,
            current_participants=10,
            max_meetings=100,
            max_participants=1000,
            health=health,
            at=T0 + timedelta(seconds=at),
        )
    )


async def register_mh(store: GcStore, mh_id: str, at: float) -> None:
    await store.upsert_media_handler(
        mh_id,
        REGION,
        f"https://{mh_id}:4433",
        f"http://{mh_id}:50053",
        500,
        T0 + timedelta(seconds=at),
    )


async def report(store: GcStore, mh_id: str, at: float, health: Health = Health.HEALTHY) -> None:
    await store.record_load_report(
        mh_id, current_streams=5, health=health, now=T0 + timedelta(seconds=at)
    )


async def health_of(store: GcStore, mc_id: str) -> Health:
    controller = await store.get_controller(mc_id)
    assert controller is not None
    return controller.health


async def mh_health_of(store: GcStore, mh_id: str) -> Health:
    handler = await store.get_media_handler(mh_id)
    assert handler is not None
    return handler.health


async def test_a_stale_mc_is_marked_and_a_fresh_one_stays(
    store: GcStore, sweeper: StalenessSweeper, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    for mc_id in ("mc-fresh", "mc-stale", "mc-edge"):
        await register_mc(store, mc_id, at=0)
        await beat(store, mc_id, at=0)
    await beat(store, "mc-fresh", at=25)
    await beat(store, "mc-edge", at=1)  # silent for exactly 30 s at the sweep: not stale yet
    marks_before = sample("gc_sweeper_marks_total", kind="mc")
    ok_before = sample("gc_sweeps_total", result="ok")
    clock.at(31)

    with caplog.at_level(logging.WARNING, logger="darktower.gc.sweeper"):
        result = await sweeper.sweep_once()

    assert result == SweepResult(("mc-stale",), (), 0)
    assert await health_of(store, "mc-stale") is Health.UNHEALTHY
    assert await health_of(store, "mc-fresh") is Health.HEALTHY
    assert await health_of(store, "mc-edge") is Health.HEALTHY
    assert sample("gc_sweeper_marks_total", kind="mc") == marks_before + 1
    assert sample("gc_sweeps_total", result="ok") == ok_before + 1
    marked = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(marked) == 1 and "mc-stale" in marked[0].getMessage()
    assert sample("gc_controllers", health="unhealthy") == 1
    assert sample("gc_controllers", health="healthy") == 2


async def test_an_already_marked_mc_is_not_marked_again(
    store: GcStore, sweeper: StalenessSweeper, clock: Clock
) -> None:
    await register_mc(store, "mc-1", at=0)
    clock.at(100)
    assert (await sweeper.sweep_once()).stale_controllers == ("mc-1",)
    clock.at(200)
    assert (await sweeper.sweep_once()).stale_controllers == ()


async def test_a_draining_mc_stays_draining(
    store: GcStore, sweeper: StalenessSweeper, clock: Clock
) -> None:
    await register_mc(store, "mc-draining", at=0)
    await beat(store, "mc-draining", at=0, health=Health.DRAINING)
    clock.at(1000)
    assert (await sweeper.sweep_once()).stale_controllers == ()
    assert await health_of(store, "mc-draining") is Health.DRAINING
    assert sample("gc_controllers", health="draining") == 1


async def test_an_mc_that_never_beat_is_marked_by_its_registration_time(
    store: GcStore, sweeper: StalenessSweeper, clock: Clock
) -> None:
    await register_mc(store, "mc-old", at=0)
    await register_mc(store, "mc-new", at=10)
    clock.at(35)
    assert (await sweeper.sweep_once()).stale_controllers == ("mc-old",)
    assert await health_of(store, "mc-old") is Health.UNHEALTHY
    assert await health_of(store, "mc-new") is Health.PENDING
    assert sample("gc_controllers", health="pending") == 1


async def test_a_marked_mc_that_beats_again_is_healthy_again(
    store: GcStore, sweeper: StalenessSweeper, clock: Clock
) -> None:
    await register_mc(store, "mc-1", at=0)
    clock.at(40)
    await sweeper.sweep_once()
    await beat(store, "mc-1", at=41)
    clock.at(42)
    assert (await sweeper.sweep_once()).stale_controllers == ()
    assert await health_of(store, "mc-1") is Health.HEALTHY


async def test_media_handlers_are_swept_likewise(
    store: GcStore, sweeper: StalenessSweeper, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    for mh_id in ("mh-fresh", "mh-stale", "mh-draining", "mh-silent", "mh-late"):
        await register_mh(store, mh_id, at=10 if mh_id == "mh-late" else 0)
    await report(store, "mh-fresh", at=20)
    await report(store, "mh-stale", at=5)
    await report(store, "mh-draining", at=0, health=Health.DRAINING)
    marks_before = sample("gc_sweeper_marks_total", kind="mh")
    clock.at(36)

    with caplog.at_level(logging.WARNING, logger="darktower.gc.sweeper"):
        result = await sweeper.sweep_once()

    assert result.stale_media_handlers == ("mh-silent", "mh-stale")
    assert result.stale_controllers == ()
    assert sample("gc_sweeper_marks_total", kind="mh") == marks_before + 2
    assert await mh_health_of(store, "mh-stale") is Health.UNHEALTHY
    assert await mh_health_of(store, "mh-silent") is Health.UNHEALTHY
    assert await mh_health_of(store, "mh-fresh") is Health.HEALTHY
    assert await mh_health_of(store, "mh-draining") is Health.DRAINING
    assert await mh_health_of(store, "mh-late") is Health.PENDING
    assert "mh-stale" in caplog.text and "mh-silent" in caplog.text
    assert sample("gc_media_handlers", health="unhealthy") == 2


async def ended_assignment(store: GcStore, meeting_id: str, ended_at: float) -> None:
    at = T0 + timedelta(seconds=ended_at)
    claim = await store.claim_meeting(
        meeting_id, REGION, "gc-1", at, stale_claim_after=timedelta(seconds=30)
    )
    assert claim.won
    await store.activate_assignment(meeting_id, REGION, "gc-1", "mc-1", ["mh-1"], at)
    assert await store.end_assignment(meeting_id, REGION, at)


async def test_old_ended_assignments_are_purged(
    store: GcStore, sweeper: StalenessSweeper, clock: Clock
) -> None:
    await register_mc(store, "mc-1", at=0)
    await beat(store, "mc-1", at=RETENTION_S)
    await ended_assignment(store, "old", ended_at=0)
    await ended_assignment(store, "recent", ended_at=RETENTION_S - 10)
    # A live assignment is never purged, however old.
    claim = await store.claim_meeting(
        "live", REGION, "gc-1", T0, stale_claim_after=timedelta(seconds=30)
    )
    assert claim.won
    await store.activate_assignment("live", REGION, "gc-1", "mc-1", [], T0)

    clock.at(RETENTION_S + 1)
    assert (await sweeper.sweep_once()).purged_assignments == 1
    assert (await sweeper.sweep_once()).purged_assignments == 0
    clock.at(2 * RETENTION_S)
    assert (await sweeper.sweep_once()).purged_assignments == 1
    assert await store.active_assignment("live", REGION) is not None


@pytest.fixture
async def dead_store() -> AsyncIterator[GcStore]:
    """A store whose PostgreSQL is not there: nothing listens on its port."""
    store = GcStore(create_engine(f"postgresql+asyncpg://gc:pw@127.0.0.1:{free_port()}/gc"))
    yield store
    await store.aclose()


async def test_a_sweep_on_a_dead_database_raises_and_is_counted(
    dead_store: GcStore, clock: Clock
) -> None:
    sweeper = StalenessSweeper(
        dead_store, staleness_s=STALENESS_S, interval_s=1, retention_s=RETENTION_S, clock=clock
    )
    failed_before = sample("gc_sweeps_total", result="failed")
    with pytest.raises(DatabaseUnavailable):
        await sweeper.sweep_once()
    assert sample("gc_sweeps_total", result="failed") == failed_before + 1


async def test_the_loop_survives_a_dead_database(
    dead_store: GcStore, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    sweeper = StalenessSweeper(
        dead_store, staleness_s=STALENESS_S, interval_s=0.02, retention_s=RETENTION_S, clock=clock
    )
    failed_before = sample("gc_sweeps_total", result="failed")
    with caplog.at_level(logging.WARNING, logger="darktower.gc.sweeper"):
        sweeper.start()
        try:
            for _ in range(500):
                if sample("gc_sweeps_total", result="failed") >= failed_before + 3:
                    break
                await asyncio.sleep(0.02)
            assert sweeper.running
        finally:
            await sweeper.stop()
    assert sample("gc_sweeps_total", result="failed") >= failed_before + 3
    assert not sweeper.running
    assert "staleness sweep failed" in caplog.text
    assert "pw@" not in caplog.text


async def test_the_loop_marks_stale_mcs_by_itself(
    store: GcStore, sweeper: StalenessSweeper, clock: Clock
) -> None:
    await register_mc(store, "mc-1", at=0)
    clock.at(60)
    sweeper.start()
    try:
        for _ in range(200):
            if await health_of(store, "mc-1") is Health.UNHEALTHY:
                break
            await asyncio.sleep(0.02)
    finally:
        await sweeper.stop()
    assert await health_of(store, "mc-1") is Health.UNHEALTHY
    await sweeper.stop()  # idempotent


async def test_start_twice_is_refused(sweeper: StalenessSweeper) -> None:
    sweeper.start()
    try:
        with pytest.raises(RuntimeError):
            sweeper.start()
    finally:
        await sweeper.stop()


@pytest.mark.parametrize("field", ["staleness_s", "interval_s", "retention_s"])
@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
async def test_non_positive_settings_are_refused(store: GcStore, field: str, value: float) -> None:
    args = {"staleness_s": 30.0, "interval_s": 5.0, "retention_s": 60.0, field: value}
    with pytest.raises(ValueError, match=field):
        StalenessSweeper(store, **args)
