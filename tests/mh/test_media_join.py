"""Through a whole fleet (GC, MC, two real MHs with Janus): a participant's join answer
carries a grant per MH, each grant admits that participant into its meeting's room on that MH
and no other meeting's, a participant who leaves loses its tokens, and the rooms go when the
meeting ends; a host mute is enforced by every MH."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from darktower.auth.fleet_keys import generate_fleet_keys
from darktower.client.session import ClientSession
from darktower.mh.server import MhApp
from darktower.signaling.protocol import JoinAnswer, MediaGrant
from tests.client import InProcessFleet, in_process_fleet
from tests.mh.test_host_mute import moderations, publish
from tests.support.janus_client import janus_client, requires_janus
from tests.support.media import mh_settings
from tests.support.waiting import eventually

pytestmark = [requires_janus, pytest.mark.timeout(120)]

ROOM_UNAUTHORIZED = 433


@dataclass
class MediaFleet:
    fleet: InProcessFleet
    mhs: dict[str, MhApp]


@pytest.fixture
async def media_fleet(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> AsyncIterator[MediaFleet]:
    generate_fleet_keys(tmp_path / "keys", gcs=[], mhs=["mh-1", "mh-2"])
    async with in_process_fleet(
        tmp_path, redis_url, mcs=1, mhs=0, mc_overrides={"empty_timeout_seconds": 3.0}
    ) as fleet:
        mhs: dict[str, MhApp] = {}
        try:
            for mh_id, zone in (("mh-1", "zone-a"), ("mh-2", "zone-b")):
                mh = MhApp(mh_settings(fleet.key_dir, fleet.gc_grpc, mh_id, tmp_path, zone=zone))
                mhs[mh_id] = mh
                await mh.start()
            for mh in mhs.values():
                await eventually(lambda mh=mh: mh.ready()[0], timeout=30, what="MH ready")

            async def placeable() -> bool:
                store = fleet.gc.store
                assert store is not None
                handlers = await store.list_media_handlers()
                return sum(h.health.value == "healthy" for h in handlers) == 2

            await eventually(placeable, timeout=20, what="both MHs healthy at the GC")
            yield MediaFleet(fleet, mhs)
        finally:
            for mh in mhs.values():
                await mh.stop()


async def _join(fleet: InProcessFleet, meeting: str, name: str) -> tuple[ClientSession, JoinAnswer]:
    session = ClientSession(fleet.gc_url, meeting, display_name=name)
    answer = await session.join()
    return session, answer


async def test_join_answers_carry_grants_that_open_their_own_meetings_room_only(
    media_fleet: MediaFleet,
) -> None:
    fleet, mhs = media_fleet.fleet, media_fleet.mhs
    ada, answer = await _join(fleet, "standup", "Ada")
    other, other_answer = await _join(fleet, "retro", "Mallory")
    try:
        assert [g.role for g in answer.media] == ["primary", "backup"]
        assert {g.mh_id for g in answer.media} == {"mh-1", "mh-2"}
        for grant in answer.media:
            mh = mhs[grant.mh_id]
            assert grant.url == mh.media_url
            assert int(grant.room) == mh.rooms.room_of("standup")
            assert "token" not in repr(grant) and grant.token not in repr(answer)
            async with janus_client(grant.url, grant.token) as client:
                assert (await client.create_session())["janus"] == "success"
                await client.attach_videoroom()
                assert (await client.join(int(grant.room)))["videoroom"] == "joined"
        # Mallory's grant on the same MH opens a session there, never the standup's room.
        for theirs in other_answer.media:
            ours = next(g for g in answer.media if g.mh_id == theirs.mh_id)
            assert theirs.room != ours.room
            async with janus_client(theirs.url, theirs.token) as client:
                await client.create_session()
                await client.attach_videoroom()
                refused = await client.join(int(ours.room))
                assert refused.get("error_code") == ROOM_UNAUTHORIZED, refused
        # Mallory leaves: her tokens are revoked on both MHs.
        await other.leave()
        for theirs in other_answer.media:

            async def revoked(grant: MediaGrant = theirs) -> bool:
                async with janus_client(grant.url, grant.token) as client:
                    answer = await client.create_session()
                    return bool(answer["janus"] == "error")

            await eventually(revoked, timeout=10, what=f"{theirs.mh_id}: Mallory's token revoked")
    finally:
        await other.aclose()
        await ada.leave()
        await ada.aclose()
    # Everybody left: the meeting ends (empty timeout) and the MC ends its rooms on both MHs.
    for mh in mhs.values():
        await eventually(
            lambda mh=mh: mh.rooms.room_of("standup") is None,
            timeout=20,
            what=f"{mh.settings.id}: the standup's room destroyed",
        )


async def test_a_host_mute_is_enforced_by_every_mh(media_fleet: MediaFleet) -> None:
    """The host mutes Bo: on each MH, Janus moderates the audio Bo's token publishes (a client
    that ignores its `muted` frame is still not heard); unmuting forwards it again."""
    fleet = media_fleet.fleet
    ada, _ = await _join(fleet, "standup", "Ada")  # the first one in: the host
    bo, bo_answer = await _join(fleet, "standup", "Bo")
    try:
        async with AsyncExitStack() as stack:
            watchers = []
            for grant in bo_answer.media:
                client = await stack.enter_async_context(janus_client(grant.url, grant.token))
                await client.create_session()
                await client.attach_videoroom()
                await publish(client, int(grant.room), display="not-bo")
                watchers.append(client)
            await ada.host_mute(bo_answer.participant_id, True)
            for client in watchers:
                seen = await moderations(client, 5.0)
                assert [(m["mid"], m["moderation"]) for m in seen] == [("0", "muted")]
            await ada.host_mute(bo_answer.participant_id, False)
            for client in watchers:
                seen = await moderations(client, 5.0)
                assert [(m["mid"], m["moderation"]) for m in seen] == [("0", "unmuted")]
    finally:
        for session in (bo, ada):
            await session.leave()
            await session.aclose()
