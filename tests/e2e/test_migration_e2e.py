"""Live migration with real processes (README "Rolling upgrades", issue 16).

A GC, two `darktower mc` and simulated MHs; `ClientSession`s join four meetings through the
GC, two people each. SIGTERM to the MC hosting the most of them: every one of its meetings goes
on on the other MC — each client redirected, the same participant ids and host, nobody seen
leaving, the meeting's Redis owner the new MC at a higher generation, the GC's assignment
naming it, no meeting-ended notice — and the drained MC exits 0. Then a third MC starts and an
operator drains the second one with `darktower drain` (the admin token from an API key): the
meetings move once more, and that MC exits 0 as well.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from darktower.auth.access_tokens import mint_access_token
from darktower.auth.api_keys import generate_api_key, write_api_key_file
from darktower.client.session import ClientSession, Ended, Joined, Redirected
from darktower.signaling.protocol import ParticipantLeft
from tests.client import Watcher
from tests.e2e.fleet import Fleet, McProc, run_cli, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

MEETINGS = ("alpha", "bravo", "charlie", "delta")
PEOPLE = ("ada", "bob")
MC_SETTINGS = {"drain_seconds": "12", "meeting_touch_seconds": "0.5"}
WAIT_S = 40.0


async def moved_to(watchers: list[Watcher], mc_id: str) -> None:
    """Until every watcher's session was redirected and is back in, on `mc_id`."""
    for watcher in watchers:
        await watcher.expect(Redirected, timeout=WAIT_S)
        back = await watcher.expect(Joined, timeout=WAIT_S)
        assert back.kind == "reconnected" and back.answer.reconnected, back
        assert back.mc_id == mc_id


def owner_and_gen(db: redis.Redis, meeting: str) -> tuple[str, int]:
    owner = db.get(f"meeting:{{{meeting}}}:owner")
    gen = db.get(f"meeting:{{{meeting}}}:gen")
    assert owner is not None and gen is not None
    return str(owner), int(str(gen))


async def exited(mc: McProc) -> int:
    return await asyncio.to_thread(mc.wait, WAIT_S)


async def test_sigterm_then_an_operator_drain_move_every_meeting_live(
    fleet: Fleet, database_url: str, redis_db: redis.Redis, tmp_path: Path
) -> None:
    key = generate_api_key()
    key_file = tmp_path / "api-key.json"
    write_api_key_file(key_file, key)
    gc = await asyncio.to_thread(fleet.start_gc, database_url, GC_API_KEY_FILES=str(key_file))
    fleet.start_mh_group(gc, {"mh-1": "zone-a", "mh-2": "zone-b"})
    for mc_id in ("mc-1", "mc-2"):
        fleet.start_mc(gc, mc_id, **MC_SETTINGS)
    await asyncio.to_thread(fleet.wait_fleet, gc, mcs=["mc-1", "mc-2"], mhs=["mh-1", "mh-2"])

    sessions: dict[str, list[ClientSession]] = {m: [] for m in MEETINGS}
    watchers: dict[str, list[Watcher]] = {m: [] for m in MEETINGS}
    try:
        for meeting in MEETINGS:
            for person in PEOPLE:
                session = ClientSession(
                    gc.http_url, meeting, display_name=person, user_id=person, open_timeout=10
                )
                await session.join()
                sessions[meeting].append(session)
                watchers[meeting].append(Watcher(session))
        on: Callable[[str], list[str]] = lambda mc_id: [  # noqa: E731
            m for m in MEETINGS if sessions[m][0].mc_id == mc_id
        ]
        first = max(("mc-1", "mc-2"), key=lambda mc_id: len(on(mc_id)))
        second = "mc-2" if first == "mc-1" else "mc-1"
        moving = on(first)
        assert moving
        ids = {m: [s.participant_id for s in sessions[m]] for m in MEETINGS}
        hosts = {m: sessions[m][0].host_id for m in MEETINGS}
        gens = {m: owner_and_gen(redis_db, m)[1] for m in moving}

        fleet.mcs[first].send_signal(signal.SIGTERM)
        for meeting in moving:
            await moved_to(watchers[meeting], second)
        assert await exited(fleet.mcs[first]) == 0
        for meeting in moving:
            owner, gen = owner_and_gen(redis_db, meeting)
            assert owner == second and gen > gens[meeting]
            assert gc.json(f"/v1/meetings/{meeting}")["mc_id"] == second
        log = fleet.mcs[first].log()
        assert f"drain: {len(moving)} migrated, 0 ended, 0 failed" in log
        assert "NotifyMeetingEnded" not in log

        # A new MC, then the operator drains the second one through the GC.
        fleet.start_mc(gc, "mc-3", **MC_SETTINGS)
        await asyncio.to_thread(
            wait_until,
            lambda: gc.controllers().get("mc-3", {}).get("health") == "healthy",
            timeout=WAIT_S,
            what="mc-3 healthy",
        )
        admin = mint_access_token(key, identity="ops", meeting_id=None, admin=True)
        done = await asyncio.to_thread(
            run_cli, "drain", second, "--gc-url", gc.http_url, "--token", admin
        )
        assert done.returncode == 0, done.stderr
        assert f"{second} is draining: {len(MEETINGS)} meetings" in done.stdout
        for meeting in MEETINGS:
            await moved_to(watchers[meeting], "mc-3")
        assert await exited(fleet.mcs[second]) == 0

        for meeting in MEETINGS:
            assert [s.participant_id for s in sessions[meeting]] == ids[meeting]
            for session in sessions[meeting]:
                assert session.host_id == hosts[meeting]
                assert session.mc_id == "mc-3"
            for watcher in watchers[meeting]:
                assert watcher.seen(ParticipantLeft) == [] and watcher.seen(Ended) == []
            assert owner_and_gen(redis_db, meeting)[0] == "mc-3"
        notices: list[Any] = [
            line
            for line in gc.metrics().splitlines()
            if line.startswith("gc_meeting_end_notices_total") and 'result="ok"' in line
        ]
        assert all(line.endswith(" 0.0") for line in notices), notices
    finally:
        for meeting in MEETINGS:
            for watcher in watchers[meeting]:
                await watcher.aclose()
            for session in sessions[meeting]:
                await session.aclose()
