"""Staleness on when a beat was RECEIVED (`LastHeard`): the receipts themselves, the batcher
noting them before any write, and the sweeper sparing an MC or MH heard from in time whose
write has not landed (issue 14: no false failover under load)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from darktower.gc.domain import Health, Heartbeat
from darktower.gc.heartbeats import HeartbeatBatcher
from darktower.gc.last_heard import Kind, LastHeard
from darktower.gc.store import GcStore
from darktower.gc.sweeper import StalenessSweeper

T0 = datetime(2030, 1, 1, tzinfo=UTC)
REGION = "eu"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def beat(mc_id: str, seconds: float) -> Heartbeat:
    return Heartbeat(
        mc_id,
        current_meetings=0,
        current_participants=0,
        max_meetings=10,
        max_participants=100,
        health=Health.HEALTHY,
        at=at(seconds),
    )


@pytest.mark.parametrize(
    ("receipts", "since", "expected"),
    [
        pytest.param([("a", 5)], 5, {"a"}, id="at the threshold counts"),
        pytest.param([("a", 4)], 5, set(), id="before it does not"),
        pytest.param([("a", 9), ("a", 1)], 5, {"a"}, id="a late older receipt changes nothing"),
        pytest.param([("a", 1), ("b", 7), ("c", 6)], 6, {"b", "c"}, id="by id"),
    ],
)
def test_heard_since(receipts: list[tuple[str, float]], since: float, expected: set[str]) -> None:
    heard = LastHeard()
    for id, seconds in receipts:
        heard.heard("mc", id, at(seconds))
    assert heard.heard_since("mc", at(since)) == expected
    assert heard.heard_since("mh", at(0)) == set()  # kinds apart


def test_forget_and_bound() -> None:
    heard = LastHeard(max_entries=2)
    heard.heard("mh", "a", at(1))
    heard.heard("mh", "b", at(2))
    heard.heard("mh", "a", at(3))  # "a" heard again: "b" is now the longest silent
    heard.heard("mh", "c", at(4))
    assert heard.heard_since("mh", at(0)) == {"a", "c"}
    heard.forget("mh", "a")
    assert heard.at("mh", "a") is None


async def test_the_batcher_notes_receipts_before_any_write(store: GcStore) -> None:
    await store.upsert_controller("mc-1", REGION, "http://mc-1:1", None, 10, 100, at(0))
    batcher = HeartbeatBatcher(store, interval_s=3600, max_pending=500)
    await batcher.start()
    try:
        await batcher.submit(beat("mc-1", 20))
        assert batcher.last_heard.at("mc", "mc-1") == at(20)
        stored = await store.get_controller("mc-1")
        assert stored is not None and stored.last_heartbeat_at is None  # not written yet
        batcher.registered("mc-1")  # a new life: what its old one sent no longer counts
        assert batcher.last_heard.at("mc", "mc-1") is None
    finally:
        await batcher.stop()


@pytest.mark.parametrize("kind", ["mc", "mh"])
async def test_the_sweeper_spares_what_was_heard_in_time_but_not_yet_written(
    store: GcStore, kind: Kind
) -> None:
    # Both last wrote at 0; at 31 (staleness 30) both look stale in the database. "-live" was
    # heard at 29: its write is still queued (behind a join flood's transactions, say).
    for suffix in ("-live", "-silent"):
        if kind == "mc":
            await store.upsert_controller(f"mc{suffix}", REGION, "http://x:1", None, 10, 100, at(0))
            await store.record_heartbeat(beat(f"mc{suffix}", 0))
        else:
            await store.upsert_media_handler(
                f"mh{suffix}", REGION, "https://x:1", "http://x:2", 5, at(0)
            )
            await store.record_load_report(
                f"mh{suffix}", current_streams=0, health=Health.HEALTHY, now=at(0)
            )
    heard = LastHeard()
    heard.heard(kind, f"{kind}-live", at(29))
    sweeper = StalenessSweeper(
        store,
        staleness_s=30,
        interval_s=1,
        retention_s=3600,
        last_heard=heard,
        clock=lambda: at(31),
    )
    result = await sweeper.sweep_once()
    marked = result.stale_controllers if kind == "mc" else result.stale_media_handlers
    assert marked == (f"{kind}-silent",)
    # Without the receipts, the database alone would have failed the live one over too.
    for suffix in ("-live", "-silent"):
        if kind == "mc":
            await store.record_heartbeat(beat(f"mc{suffix}", 0))
        else:
            await store.record_load_report(
                f"mh{suffix}", current_streams=0, health=Health.HEALTHY, now=at(0)
            )
    blind = StalenessSweeper(
        store, staleness_s=30, interval_s=1, retention_s=3600, clock=lambda: at(31)
    )
    result = await blind.sweep_once()
    marked = result.stale_controllers if kind == "mc" else result.stale_media_handlers
    assert marked == (f"{kind}-live", f"{kind}-silent")


async def test_a_late_gc_extends_the_threshold_by_its_own_lateness(store: GcStore) -> None:
    # The GC's loop was 1.5 s late (saturated): it handled beats up to that late too.
    for mc_id, last in (("mc-31", 0.5), ("mc-32", -1.0)):
        await store.upsert_controller(mc_id, REGION, "http://x:1", None, 10, 100, at(-2))
        await store.record_heartbeat(beat(mc_id, last))
    sweeper = StalenessSweeper(
        store, staleness_s=30, interval_s=1, retention_s=3600, clock=lambda: at(31)
    )
    assert sweeper.lateness_allowance() == 0.0
    sweeper.note_lateness(1.5)
    sweeper.note_lateness(0.2)
    assert sweeper.lateness_allowance() == 1.5
    result = await sweeper.sweep_once()
    assert result.stale_controllers == ("mc-32",)  # silent 32 s; mc-31 (30.5 s) spared
    # Lateness older than the staleness window no longer counts.
    sweeper.note_lateness(0.0, at=10_000_000.0)
    assert sweeper.lateness_allowance(at=10_000_000.0) == 0.0
