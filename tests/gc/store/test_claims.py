"""The claim protocol: concurrent joins of one meeting agree on one MC."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from darktower.gc.domain import AssignmentState, Claim, Health, Heartbeat
from darktower.gc.store import ClaimLost, GcStore, UnknownController

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
STALE = timedelta(seconds=30)
MEETING, REGION = "meeting-1", "eu"


async def _live_rows(store: GcStore, meeting_id: str = MEETING) -> int:
    async with store.engine.connect() as connection:
        count = await connection.scalar(
            text(
                "SELECT count(*) FROM meeting_assignments "
                "WHERE meeting_id = :m AND region = :r AND ended_at IS NULL"
            ),
            {"m": meeting_id, "r": REGION},
        )
    assert isinstance(count, int)
    return count


async def _register(store: GcStore, *mc_ids: str) -> None:
    for mc_id in mc_ids:
        await store.upsert_controller(mc_id, REGION, f"http://{mc_id}:1", None, 100, 1000, T0)


async def _claim(store: GcStore, gc_id: str, at: datetime = T0, meeting: str = MEETING) -> Claim:
    return await store.claim_meeting(meeting, REGION, gc_id, at, stale_claim_after=STALE)


async def test_first_claim_wins_and_is_live(store: GcStore) -> None:
    claim = await _claim(store, "gc-a")

    assert claim == Claim(won=True)
    live = await store.active_assignment(MEETING, REGION)
    assert live is not None
    assert live.state is AssignmentState.CLAIMED and live.claimed_by == "gc-a"
    assert live.mc_id is None and live.mh_ids == () and live.assigned_at is None
    assert live.claimed_at == T0 and live.ended_at is None
    assert await store.active_assignment(MEETING, "us") is None


async def test_twenty_concurrent_claims_one_winner(store: GcStore) -> None:
    claims = await asyncio.gather(*(_claim(store, f"gc-{i}") for i in range(20)))

    winners = [i for i, claim in enumerate(claims) if claim.won]
    assert len(winners) == 1
    winner = f"gc-{winners[0]}"
    for claim in claims:
        if not claim.won:
            assert claim.existing is not None and claim.existing.claimed_by == winner
    assert await _live_rows(store) == 1


async def test_losers_wait_for_the_winners_activation(store: GcStore) -> None:
    await _register(store, "mc-1")
    claims = await asyncio.gather(*(_claim(store, f"gc-{i}") for i in range(20)))
    (winner,) = [f"gc-{i}" for i, claim in enumerate(claims) if claim.won]

    async def activate_soon() -> None:
        await asyncio.sleep(0.2)
        await store.activate_assignment(MEETING, REGION, winner, "mc-1", ["mh-1", "mh-2"], T0)

    waits = [store.wait_for_activation(MEETING, REGION, timeout=10) for claim in claims[1:]]
    *seen, _ = await asyncio.gather(*waits, activate_soon())

    for assignment in seen:
        assert assignment is not None and assignment.state is AssignmentState.ACTIVE
        assert assignment.mc_id == "mc-1" and assignment.mh_ids == ("mh-1", "mh-2")
        assert assignment.claimed_by == winner and assignment.assigned_at == T0
    assert await _live_rows(store) == 1


async def test_two_engines_racing_agree(database_url: str) -> None:
    """Two GC processes (two engines) join the same meetings at once: one MC each meeting."""
    gc_a, gc_b = await GcStore.open(database_url), await GcStore.open(database_url)
    try:
        await _register(gc_a, "mc-a", "mc-b")

        async def join(store: GcStore, gc_id: str, mc_id: str, meeting: str) -> str | None:
            claim = await _claim(store, gc_id, meeting=meeting)
            if claim.won:
                await store.activate_assignment(meeting, REGION, gc_id, mc_id, ["mh"], T0)
                return mc_id
            assignment = await store.wait_for_activation(meeting, REGION, timeout=20)
            return None if assignment is None else assignment.mc_id

        meetings = [f"m-{n}" for n in range(8)]
        joins = [
            join(store, gc_id, mc_id, meeting)
            for meeting in meetings
            for _ in range(3)
            for store, gc_id, mc_id in [(gc_a, "gc-a", "mc-a"), (gc_b, "gc-b", "mc-b")]
        ]
        answers = await asyncio.gather(*joins)

        by_meeting = [set(answers[i * 6 : (i + 1) * 6]) for i in range(len(meetings))]
        assert all(len(mcs) == 1 and None not in mcs for mcs in by_meeting)
        for meeting in meetings:
            assert await _live_rows(gc_b, meeting) == 1
        mcs = {mc.id: mc.assignments_since_heartbeat for mc in await gc_b.list_controllers()}
        assert sum(mcs.values()) == len(meetings)
    finally:
        await gc_a.aclose()
        await gc_b.aclose()


async def test_stale_claim_is_taken_over(store: GcStore) -> None:
    await _register(store, "mc-1")
    assert (await _claim(store, "gc-dead")).won

    fresh = await _claim(store, "gc-b", T0 + STALE)
    assert not fresh.won and fresh.existing is not None
    assert fresh.existing.claimed_by == "gc-dead"

    later = T0 + STALE + timedelta(seconds=1)
    taken = await _claim(store, "gc-b", later)
    assert taken.won and taken.taken_over is not None
    assert taken.taken_over.claimed_by == "gc-dead" and taken.taken_over.ended_at == later
    live = await store.active_assignment(MEETING, REGION)
    assert live is not None and live.claimed_by == "gc-b" and live.claimed_at == later
    assert await _live_rows(store) == 1

    with pytest.raises(ClaimLost):
        await store.activate_assignment(MEETING, REGION, "gc-dead", "mc-1", ["mh"], later)
    assert (await store.activate_assignment(MEETING, REGION, "gc-b", "mc-1", [], later)).mc_id


async def test_active_assignment_is_never_taken_over(store: GcStore) -> None:
    await _register(store, "mc-1")
    await _claim(store, "gc-a")
    await store.activate_assignment(MEETING, REGION, "gc-a", "mc-1", ["mh"], T0)

    claim = await _claim(store, "gc-b", T0 + timedelta(days=1))
    assert not claim.won and claim.existing is not None
    assert claim.existing.state is AssignmentState.ACTIVE and claim.existing.mc_id == "mc-1"


async def test_release_claim(store: GcStore) -> None:
    await _claim(store, "gc-a")

    assert not await store.release_claim(MEETING, REGION, "gc-other")
    assert await store.release_claim(MEETING, REGION, "gc-a")
    assert await store.active_assignment(MEETING, REGION) is None
    assert not await store.release_claim(MEETING, REGION, "gc-a")
    assert await store.wait_for_activation(MEETING, REGION, timeout=1) is None
    assert (await _claim(store, "gc-b")).won


async def test_activation_needs_our_live_claim(store: GcStore) -> None:
    await _register(store, "mc-1")
    with pytest.raises(ClaimLost):
        await store.activate_assignment(MEETING, REGION, "gc-a", "mc-1", [], T0)

    await _claim(store, "gc-a")
    with pytest.raises(ClaimLost) as caught:
        await store.activate_assignment(MEETING, REGION, "gc-b", "mc-1", [], T0)
    assert caught.value.code == "claim_lost"
    with pytest.raises(UnknownController):
        await store.activate_assignment(MEETING, REGION, "gc-a", "mc-ghost", [], T0)
    live = await store.active_assignment(MEETING, REGION)
    assert live is not None and live.state is AssignmentState.CLAIMED

    await store.end_assignment(MEETING, REGION, T0)
    with pytest.raises(ClaimLost):
        await store.activate_assignment(MEETING, REGION, "gc-a", "mc-1", [], T0)


async def test_ended_meeting_can_be_claimed_again(store: GcStore) -> None:
    await _register(store, "mc-1", "mc-2")
    await _claim(store, "gc-a")
    await store.activate_assignment(MEETING, REGION, "gc-a", "mc-1", ["mh"], T0)

    assert await store.end_assignment(MEETING, REGION, T0 + timedelta(minutes=1))
    assert not await store.end_assignment(MEETING, REGION, T0 + timedelta(minutes=1))
    assert await store.active_assignment(MEETING, REGION) is None

    again = await _claim(store, "gc-b", T0 + timedelta(minutes=2))
    assert again.won
    assignment = await store.activate_assignment(MEETING, REGION, "gc-b", "mc-2", [], T0)
    assert assignment.mc_id == "mc-2" and await _live_rows(store) == 1


async def test_end_assignment_if_still_on_that_mc(store: GcStore) -> None:
    await _register(store, "mc-1")
    await _claim(store, "gc-a")
    assert not await store.end_assignment_if(MEETING, REGION, "mc-1", T0)  # still claimed
    await store.activate_assignment(MEETING, REGION, "gc-a", "mc-1", [], T0)

    assert not await store.end_assignment_if(MEETING, REGION, "mc-2", T0)
    assert await store.active_assignment(MEETING, REGION) is not None
    assert await store.end_assignment_if(MEETING, REGION, "mc-1", T0)
    assert await store.active_assignment(MEETING, REGION) is None


async def test_purge_ended(store: GcStore) -> None:
    await _register(store, "mc-1")
    for n, ended in enumerate([T0, T0 + timedelta(hours=1), T0 + timedelta(hours=3)]):
        meeting = f"m-{n}"
        await _claim(store, "gc-a", meeting=meeting)
        await store.activate_assignment(meeting, REGION, "gc-a", "mc-1", [], T0)
        await store.end_assignment(meeting, REGION, ended)
    await _claim(store, "gc-a", meeting="m-live")

    assert await store.purge_ended(T0 + timedelta(hours=2)) == 2
    assert await store.purge_ended(T0 + timedelta(hours=2)) == 0
    assert await store.active_assignment("m-live", REGION) is not None
    assert await store.purge_ended(T0 + timedelta(days=1)) == 1


async def test_wait_for_activation_times_out_on_a_pending_claim(store: GcStore) -> None:
    await _claim(store, "gc-a")
    assert await store.wait_for_activation(MEETING, REGION, timeout=0.2, poll=0.02) is None


async def test_a_refused_activation_counts_nothing_and_a_done_one_is_whole(
    store: GcStore,
) -> None:
    """The MC's count grows only with an activation that happened (one statement on
    PostgreSQL: the count is conditional on the activation's row), and the activation answers
    the row as written."""
    await _register(store, "mc-1")
    await _claim(store, "gc-a")
    with pytest.raises(ClaimLost):
        await store.activate_assignment(MEETING, REGION, "gc-b", "mc-1", ["mh-1"], T0)
    with pytest.raises(UnknownController):
        await store.activate_assignment(MEETING, REGION, "gc-a", "mc-ghost", ["mh-1"], T0)
    counts = {mc.id: mc.assignments_since_heartbeat for mc in await store.list_controllers()}
    assert counts == {"mc-1": 0}

    at = T0 + timedelta(seconds=3)
    done = await store.activate_assignment(MEETING, REGION, "gc-a", "mc-1", ["mh-1", "mh-2"], at)
    assert done.state is AssignmentState.ACTIVE and done.mc_id == "mc-1"
    assert done.mh_ids == ("mh-1", "mh-2") and done.assigned_at == at
    assert done.claimed_by == "gc-a" and done.claimed_at == T0 and done.ended_at is None
    assert done == await store.active_assignment(MEETING, REGION)
    counts = {mc.id: mc.assignments_since_heartbeat for mc in await store.list_controllers()}
    assert counts == {"mc-1": 1}


async def test_assignments_since_heartbeat(store: GcStore) -> None:
    await _register(store, "mc-1", "mc-2")
    for n in range(3):
        await _claim(store, "gc-a", meeting=f"m-{n}")
        await store.activate_assignment(f"m-{n}", REGION, "gc-a", "mc-1", [], T0)

    counts = {mc.id: mc.assignments_since_heartbeat for mc in await store.list_controllers()}
    assert counts == {"mc-1": 3, "mc-2": 0}

    mc = await store.record_heartbeat(
        Heartbeat(
            "mc-1",
            current_meetings=3,
            current_participants=0,
            max_meetings=100,
            max_participants=1000,
            health=Health.HEALTHY,
            at=T0 + timedelta(seconds=1),
        )
    )
    assert mc.assignments_since_heartbeat == 0
