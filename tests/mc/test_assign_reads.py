"""An assignment reads a meeting's state back only when there is some to take over: a new
meeting (the acquire found no state hash, `Lease.fresh`) starts without the read; a meeting
another MC ran still carries its participants over."""

from __future__ import annotations

from typing import Any

import pytest

from darktower.fencing import RedisFencedStore
from darktower.mc.roster import Member, participant_field
from tests.support.mc import RunningMc


def _count_reads(store: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    real = store.read

    async def read(meeting_id: str) -> Any:
        reads.append(meeting_id)
        return await real(meeting_id)

    monkeypatch.setattr(store, "read", read)
    return reads


async def test_a_new_meeting_starts_without_reading_its_state_back(
    mc: RunningMc, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = _count_reads(mc.app.store, monkeypatch)
    assert (await mc.assign("fresh-1")).accepted
    meeting = mc.app.controller.meetings["fresh-1"]
    await meeting.started.wait()
    assert meeting.lease.fresh
    assert reads == []
    assert not meeting.lost


async def test_a_meeting_another_mc_ran_is_read_and_its_roster_carried_over(
    mc: RunningMc, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = RedisFencedStore(redis_client)
    lease = await other.acquire("taken-1", "mc-other", mh="[]")
    member = Member("p-1", "user-1", "Ann", "corr-1", joined_at_ms=1)
    await other.fenced_hset(lease, {participant_field("p-1"): member.to_json()})
    reads = _count_reads(mc.app.store, monkeypatch)
    assert (await mc.assign("taken-1")).accepted
    meeting = mc.app.controller.meetings["taken-1"]
    await meeting.started.wait()
    assert not meeting.lease.fresh
    assert reads == ["taken-1"]
    assert list(meeting.roster.members) == ["p-1"]
    assert not meeting.roster.members["p-1"].connected  # carried over, within its grace
