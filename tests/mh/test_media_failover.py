"""Media failover driven by the MC, through a whole fleet (GC, MC, two real MHs with Janus): the
primary MH dies (its Janus killed, the MH stopped); the MC's media watch sees its health checks
fail, drops it from the meeting, and registers both participants on the backup anew: one that
holds a live token there keeps it (a page that moved by itself is not cut off), one whose token
there is gone gets a new one that admits it into the same room — while the meeting goes on.
(The browser side — `media_update` reaching the pages, frames resuming — is
`test_media_browser`.)"""

from __future__ import annotations

import os
import signal

import pytest

from darktower.mc.meeting import MeetingActor
from darktower.signaling.protocol import MediaGrant
from tests.mh.test_media_join import MediaFleet, _join, media_fleet  # noqa: F401
from tests.support.janus_client import janus_client, requires_janus
from tests.support.waiting import eventually

pytestmark = [requires_janus, pytest.mark.timeout(120)]


async def _opens(grant_url: str, token: str, room: int) -> bool:
    async with janus_client(grant_url, token) as client:
        if (await client.create_session())["janus"] != "success":
            return False
        await client.attach_videoroom()
        return (await client.join(room)).get("videoroom") == "joined"


async def test_the_mc_moves_media_to_the_backup_when_the_primary_dies(
    media_fleet: MediaFleet,  # noqa: F811 (the fixture imported above)
) -> None:
    fleet, mhs = media_fleet.fleet, media_fleet.mhs
    ada, ada_answer = await _join(fleet, "standup", "Ada")
    bo, bo_answer = await _join(fleet, "standup", "Bo")
    try:
        primary, backup = (g.mh_id for g in ada_answer.media)
        meeting: MeetingActor = fleet.mcs[0].controller.meetings["standup"]
        assert [m.mh_id for m in meeting.mhs] == [primary, backup]
        old_backup: dict[str, MediaGrant] = {
            a.participant_id: next(g for g in a.media if g.mh_id == backup)
            for a in (ada_answer, bo_answer)
        }
        rooms = mhs[backup].rooms
        # Bo's backup token is gone (as if never used in time): he must be registered anew.
        assert await rooms.end("standup", bo_answer.participant_id)

        dead = mhs[primary]
        assert dead.keeper.process is not None
        os.kill(dead.keeper.process.pid, signal.SIGKILL)
        await dead.stop()

        # The MC drops the dead MH: the backup is the meeting's primary now.
        await eventually(
            lambda: [m.mh_id for m in meeting.mhs] == [backup],
            timeout=15,
            what="the meeting without the dead MH",
        )
        room = rooms.room_of("standup")
        assert room is not None and room == int(old_backup[ada_answer.participant_id].room)

        # Bo is registered there again: a new token that opens the room.
        async def bo_registered() -> bool:
            return bo_answer.participant_id in rooms._rooms["standup"].tokens

        await eventually(bo_registered, timeout=10, what="Bo registered on the backup again")
        bo_token = rooms._rooms["standup"].tokens[bo_answer.participant_id]
        assert bo_token != old_backup[bo_answer.participant_id].token
        assert await _opens(old_backup[bo_answer.participant_id].url, bo_token, room)
        # Ada kept the live token she held there: it still opens the room.
        ada_grant = old_backup[ada_answer.participant_id]
        assert rooms._rooms["standup"].tokens[ada_answer.participant_id] == ada_grant.token
        assert await _opens(ada_grant.url, ada_grant.token, room)
        # The meeting goes on: signaling untouched, both still in it.
        assert {p for p in meeting.roster.members} == {
            ada_answer.participant_id,
            bo_answer.participant_id,
        }
    finally:
        for session in (bo, ada):
            await session.leave()
            await session.aclose()
