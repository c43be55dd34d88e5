"""Registration, heartbeats, load reports and staleness of MCs and MHs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from darktower.gc.domain import Health, Heartbeat
from darktower.gc.store import GcStore, UnknownController, UnknownMediaHandler

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


async def _register_mc(
    store: GcStore, mc_id: str, region: str = "eu", *, at: datetime = T0
) -> None:
    await store.upsert_controller(
        mc_id, region, f"http://{mc_id}:50052", f"https://{mc_id}:4433", 1000, 10000, at
    )


async def _beat(store: GcStore, mc_id: str, at: datetime, health: Health = Health.HEALTHY) -> None:
    await store.record_heartbeat(
        Heartbeat(
            mc_id,
            current_meetings=1,
            current_participants=5,
            max_meetings=1000,
            max_participants=10000,
            health=health,
            at=at,
        )
    )


async def test_upsert_controller_registers_pending(store: GcStore) -> None:
    mc = await store.upsert_controller("mc-1", "eu", "http://mc-1:50052", None, 10, 100, T0)

    assert mc.id == "mc-1" and mc.region == "eu" and mc.grpc_endpoint == "http://mc-1:50052"
    assert mc.webtransport_endpoint is None
    assert (mc.max_meetings, mc.max_participants) == (10, 100)
    assert (mc.current_meetings, mc.current_participants) == (0, 0)
    assert mc.health is Health.PENDING
    assert mc.registered_at == T0 and mc.registered_at.tzinfo is not None
    assert mc.last_heartbeat_at is None and mc.assignments_since_heartbeat == 0
    assert await store.get_controller("mc-1") == mc


async def test_reregistration_resets_the_controller(store: GcStore) -> None:
    await _register_mc(store, "mc-1")
    await _beat(store, "mc-1", T0 + timedelta(seconds=5))

    later = T0 + timedelta(minutes=1)
    mc = await store.upsert_controller("mc-1", "us", "https://new:1", None, 5, 50, later)

    assert (mc.region, mc.grpc_endpoint, mc.max_meetings, mc.max_participants) == (
        "us",
        "https://new:1",
        5,
        50,
    )
    assert mc.health is Health.PENDING and mc.current_meetings == 0
    assert mc.registered_at == later and mc.last_heartbeat_at is None
    assert await store.list_controllers() == [mc]


async def test_heartbeat_updates_load_and_health(store: GcStore) -> None:
    await _register_mc(store, "mc-1")
    at = T0 + timedelta(seconds=10)

    mc = await store.record_heartbeat(
        Heartbeat(
            "mc-1",
            current_meetings=7,
            current_participants=70,
            max_meetings=800,
            max_participants=9000,
            health=Health.DEGRADED,
            cpu_percent=81.5,
            memory_percent=40.0,
            at=at,
        )
    )

    assert (mc.current_meetings, mc.current_participants) == (7, 70)
    assert (mc.max_meetings, mc.max_participants) == (800, 9000)
    assert mc.health is Health.DEGRADED
    assert (mc.cpu_percent, mc.memory_percent) == (81.5, 40.0)
    assert mc.last_heartbeat_at == at
    assert await store.get_controller("mc-1") == mc


async def test_fast_heartbeat_keeps_the_last_cpu_and_memory(store: GcStore) -> None:
    await _register_mc(store, "mc-1")
    beat = {
        "current_meetings": 1,
        "current_participants": 0,
        "max_meetings": 10,
        "max_participants": 100,
        "health": Health.HEALTHY,
    }
    await store.record_heartbeat(
        Heartbeat(
            "mc-1", **beat, cpu_percent=12.5, memory_percent=3.0, at=T0 + timedelta(seconds=1)
        )
    )
    fast = await store.record_heartbeat(Heartbeat("mc-1", **beat, at=T0 + timedelta(seconds=2)))
    assert (fast.cpu_percent, fast.memory_percent) == (12.5, 3.0)
    assert fast.last_heartbeat_at == T0 + timedelta(seconds=2)


async def test_heartbeat_of_unknown_controller(store: GcStore) -> None:
    with pytest.raises(UnknownController) as caught:
        await _beat(store, "ghost", T0)
    assert caught.value.controller_id == "ghost" and caught.value.code == "unknown_controller"
    assert await store.get_controller("ghost") is None


async def test_list_controllers_by_region(store: GcStore) -> None:
    for mc_id, region in [("mc-b", "eu"), ("mc-a", "eu"), ("mc-c", "us")]:
        await _register_mc(store, mc_id, region)

    assert [mc.id for mc in await store.list_controllers()] == ["mc-a", "mc-b", "mc-c"]
    assert [mc.id for mc in await store.list_controllers("eu")] == ["mc-a", "mc-b"]
    assert await store.list_controllers("ap") == []


async def test_mark_stale_controllers(store: GcStore) -> None:
    threshold = T0 + timedelta(seconds=30)
    # fresh heartbeat / old heartbeat / never beat, registered long ago / never beat, fresh
    for mc_id in ["fresh", "silent", "mute", "new", "draining", "dead"]:
        await _register_mc(store, mc_id)
    await _register_mc(store, "new", at=threshold + timedelta(seconds=1))
    await _beat(store, "fresh", threshold + timedelta(seconds=1))
    await _beat(store, "silent", threshold - timedelta(seconds=1))
    await _beat(store, "draining", T0, Health.DRAINING)
    await _beat(store, "dead", T0, Health.UNHEALTHY)

    assert await store.mark_stale_controllers(threshold) == ["mute", "silent"]

    health = {mc.id: mc.health for mc in await store.list_controllers()}
    assert health == {
        "fresh": Health.HEALTHY,
        "silent": Health.UNHEALTHY,
        "mute": Health.UNHEALTHY,
        "new": Health.PENDING,
        "draining": Health.DRAINING,
        "dead": Health.UNHEALTHY,
    }
    assert await store.mark_stale_controllers(threshold) == []
    # A heartbeat brings a stale MC back with the health it reports.
    await _beat(store, "silent", threshold + timedelta(seconds=2))
    assert (await store.get_controller("silent")).health is Health.HEALTHY


async def test_media_handler_registration_and_load_report(store: GcStore) -> None:
    mh = await store.upsert_media_handler(
        "mh-1", "eu", "https://mh-1:4433", "http://mh-1:50053", 500, T0, zone="eu-1a"
    )
    assert (mh.id, mh.region, mh.zone, mh.max_streams, mh.current_streams) == (
        "mh-1",
        "eu",
        "eu-1a",
        500,
        0,
    )
    assert mh.health is Health.PENDING and mh.last_report_at is None

    at = T0 + timedelta(seconds=3)
    reported = await store.record_load_report(
        "mh-1",
        current_streams=42,
        health=Health.HEALTHY,
        cpu_percent=10.0,
        memory_percent=20.0,
        bandwidth_percent=30.0,
        now=at,
    )
    assert reported.current_streams == 42 and reported.health is Health.HEALTHY
    assert (reported.cpu_percent, reported.memory_percent, reported.bandwidth_percent) == (
        10.0,
        20.0,
        30.0,
    )
    assert reported.last_report_at == at
    assert await store.get_media_handler("mh-1") == reported
    assert await store.list_media_handlers("eu") == [reported]
    assert await store.list_media_handlers("us") == []

    again = await store.upsert_media_handler("mh-1", "eu", "https://x:1", "http://x:2", 9, at)
    assert again.current_streams == 0 and again.health is Health.PENDING and again.zone is None


async def test_load_report_of_unknown_media_handler(store: GcStore) -> None:
    with pytest.raises(UnknownMediaHandler) as caught:
        await store.record_load_report("ghost", current_streams=1, health=Health.HEALTHY, now=T0)
    assert caught.value.handler_id == "ghost" and caught.value.code == "unknown_media_handler"


async def test_mark_stale_media_handlers(store: GcStore) -> None:
    threshold = T0 + timedelta(seconds=30)
    for mh_id in ["fresh", "silent", "mute", "draining"]:
        await store.upsert_media_handler(mh_id, "eu", "https://m:1", "http://m:2", 10, T0)
    for mh_id, at, health in [
        ("fresh", threshold, Health.HEALTHY),
        ("silent", threshold - timedelta(microseconds=1), Health.HEALTHY),
        ("draining", T0, Health.DRAINING),
    ]:
        await store.record_load_report(mh_id, current_streams=0, health=health, now=at)

    assert await store.mark_stale_media_handlers(threshold) == ["mute", "silent"]
    by_id = {mh.id: mh.health for mh in await store.list_media_handlers()}
    assert by_id == {
        "fresh": Health.HEALTHY,
        "silent": Health.UNHEALTHY,
        "mute": Health.UNHEALTHY,
        "draining": Health.DRAINING,
    }
