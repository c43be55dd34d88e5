"""`darktower roll` on a running `darktower dev` fleet (README "Rolling upgrades").

A real `darktower dev --mcs 3` (embedded Redis, GC, three MCs, simulated MHs); 30
`ClientSession`s in 10 meetings; the README's `darktower roll` as typed drains every MC one at
a time while they stay connected, and the fleet starts each again once it has exited.
Checked: the command's lines (per MC: migrated, 0 ended) and exit 0; every session still in its
meeting with the same participant id, nobody seen leaving, no session ended; every MC running a
new process.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from darktower.client.session import ClientSession, Ended
from darktower.signaling.protocol import ParticipantLeft
from tests.client import Watcher
from tests.dev.support import StartFleet
from tests.support.readme import bash_blocks_in

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MEETINGS = [f"roll-{i}" for i in range(10)]
VENV_BIN = Path(sys.executable).parent


def commands() -> list[str]:
    """The README's "Rolling upgrades" command, comments stripped."""
    (block,) = bash_blocks_in("## Rolling upgrades")
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    found = [line for line in lines if line]
    assert found == ["darktower roll"], found
    return found


def shell(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`command` through bash with this venv's `darktower` first on PATH."""
    path = f"{VENV_BIN}:{env.get('PATH', '')}"
    return subprocess.run(
        ["bash", "-c", command],
        env={**env, "PATH": path},
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )


PEOPLE = ("ada", "bob", "cy")


async def test_a_rolling_restart_of_three_mcs_under_30_clients_ends_no_meeting(
    start_fleet: StartFleet, env: dict[str, str]
) -> None:
    fleet = start_fleet("--mcs", "3", "--mhs", "2")
    gc_url = str(fleet.state()["gc_url"])
    before = {n: p for n, p in fleet.pids().items() if n.startswith("mc-")}
    assert len(before) == 3
    sessions: list[ClientSession] = []
    watchers: list[Watcher] = []
    try:
        sessions = [
            ClientSession(gc_url, m, display_name=p, user_id=p, open_timeout=20)
            for m in MEETINGS
            for p in PEOPLE
        ]
        await asyncio.gather(*(s.join() for s in sessions))
        watchers = [Watcher(s) for s in sessions]
        ids = [s.participant_id for s in sessions]
        hosts = [s.host_id for s in sessions]

        # The README's command, as typed.
        (roll,) = commands()
        rolled = await asyncio.to_thread(shell, roll, env)
        print(rolled.stdout)  # shown for a failed test
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        for mc_id in sorted(before):
            assert f"darktower roll: {mc_id}: draining" in rolled.stdout
            assert f"darktower roll: {mc_id}: " in rolled.stdout
        assert rolled.stdout.count(" 0 ended, 0 failed") == 3, rolled.stdout
        assert "rolled 3 MCs, no meeting ended" in rolled.stdout
        after = {n: p for n, p in fleet.pids().items() if n.startswith("mc-")}
        assert all(after[n] != before[n] for n in before), (before, after)

        # Every client followed its meeting (several times, for some): same ids and hosts.
        await asyncio.sleep(0)
        assert [s.participant_id for s in sessions] == ids
        assert [s.host_id for s in sessions] == hosts
        for session, watcher in zip(sessions, watchers, strict=True):
            assert session.ended is None
            assert watcher.seen(Ended) == [] and watcher.seen(ParticipantLeft) == []
            assert session.mc_id in after
    finally:
        for watcher in watchers:
            await watcher.aclose()
        for session in sessions:
            await session.aclose()
