"""`darktower dev` with real media handlers: with `janus` installed every MH is a `darktower mh`
that starts its own Janus, the table shows each Janus's client WebSocket, a participant's join
answer points at those endpoints and its token opens the meeting's room there, and `--restart`
brings a killed MH back (its Janus gone with it, a new one on the same port). Without `janus`
on PATH the fleet says so and simulates the MHs; `--mh-sim` asks for simulated ones.

No media flows here (no browser): these tests judge the fleet. The browser scenario in a
network namespace is tests/mh/test_media_browser.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import psutil
import pytest

from darktower.client.session import ClientSession
from darktower.dev.cli import choose_mhs
from darktower.signaling.protocol import MediaGrant
from tests.dev.support import DevFleet, StartFleet, cli
from tests.support.janus_client import janus_client, requires_janus
from tests.support.processes import pid_gone
from tests.support.waiting import wait_until

ROW = r"│ {name}\s+│ {pid}\s+│ gRPC (\d+)\s+health (\d+)\s+Janus WS (\d+)\s+│ (zone-\w)"


def _listening(pid: int) -> set[int]:
    return {
        c.laddr.port
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    }


def _janus_of(mh_pid: int) -> list[psutil.Process]:
    return [c for c in psutil.Process(mh_pid).children() if c.name() == "janus"]


def _mh_rows(fleet: DevFleet, pids: dict[str, int]) -> dict[str, tuple[int, int, int]]:
    """mh name -> (gRPC, health, Janus WS) ports as the table shows them."""
    out = fleet.output()
    rows = {}
    for name in ("mh-1", "mh-2"):
        row = re.search(ROW.format(name=name, pid=pids[name]), out)
        assert row, out
        rows[name] = (int(row.group(1)), int(row.group(2)), int(row.group(3)))
    return rows


async def _grants_open_their_room(gc_url: str, meeting: str) -> list[MediaGrant]:
    """Join `meeting` as a guest; each media grant's token opens a Janus session at its URL
    and joins its room; then leave."""
    session = ClientSession(gc_url, meeting, display_name="Ada")
    answer = await session.join()
    try:
        for grant in answer.media:
            async with janus_client(grant.url, grant.token) as client:
                assert (await client.create_session())["janus"] == "success"
                await client.attach_videoroom()
                joined = await client.join(int(grant.room))
                assert joined.get("videoroom") == "joined", joined
    finally:
        await session.leave()
        await session.aclose()
    return list(answer.media)


def _mh_health(env: dict[str, str], name: str) -> str:
    status = cli(env, "status", "--json")
    assert status.returncode == 0, status.stderr
    handlers = json.loads(status.stdout)["media_handlers"]
    return str(next((h["health"] for h in handlers if h["id"] == name), "absent"))


@requires_janus
@pytest.mark.timeout(240)
def test_dev_runs_janus_mhs_that_admit_participants_and_come_back_after_kill_9(
    start_fleet: StartFleet, env: dict[str, str]
) -> None:
    fleet = start_fleet("--mcs", "1", "--mhs", "2", "--restart", media=True)
    out = fleet.output()
    assert "media: Janus in each MH; open the join page in two tabs" in out, out
    assert "simulated" not in out, out
    assert all(len(line) <= 80 for line in out.splitlines() if not line.startswith("logs:"))
    pids = fleet.pids()
    rows = _mh_rows(fleet, pids)
    for name, (grpc, health, ws) in rows.items():
        mh = psutil.Process(pids[name])
        assert mh.cmdline()[-2:] == ["darktower", "mh"], mh.cmdline()
        assert {grpc, health} <= _listening(mh.pid)
        (janus,) = _janus_of(mh.pid)  # one Janus per MH, its child, on the table's port
        assert ws in _listening(janus.pid), (name, ws)

    # A guest's join answer has a grant per MH at the Janus endpoints the table shows, and
    # each grant's token opens the meeting's room there.
    grants = asyncio.run(_grants_open_their_room(str(fleet.state()["gc_url"]), "standup"))
    assert sorted((g.mh_id, g.url) for g in grants) == [
        (name, f"http://127.0.0.1:{rows[name][2]}") for name in ("mh-1", "mh-2")
    ]

    # kill -9 an MH: its Janus dies with it; `--restart` starts it again on the same ports,
    # with a new Janus, and the GC reports it healthy again.
    old_pid = pids["mh-1"]
    (old_janus,) = _janus_of(old_pid)
    psutil.Process(old_pid).kill()
    fleet.wait_output(rf"mh-1 \(pid {old_pid}\) died: killed by SIGKILL; .*restarting it in 1s")
    restarted = fleet.wait_output(r"restarted mh-1: pid (\d+) \(same id and ports\)")
    new_pid = int(restarted.group(1))
    wait_until(lambda: pid_gone(old_janus.pid), timeout=30, what="the killed MH's Janus gone")
    wait_until(lambda: len(_janus_of(new_pid)) == 1, timeout=30, what="a new Janus started")
    (new_janus,) = _janus_of(new_pid)
    wait_until(
        lambda: rows["mh-1"][2] in _listening(new_janus.pid),
        timeout=30,
        what="the new Janus on the same WebSocket port",
    )
    wait_until(lambda: _mh_health(env, "mh-1") == "healthy", timeout=60, what="mh-1 healthy")
    again = asyncio.run(_grants_open_their_room(str(fleet.state()["gc_url"]), "retro"))
    assert {g.mh_id for g in again} == {"mh-1", "mh-2"}

    # Ctrl-C stops every MH, and each MH its Janus.
    janus_pids = [new_janus.pid, *(j.pid for j in _janus_of(pids["mh-2"]))]
    assert len(janus_pids) == 2
    assert fleet.interrupt() == 0, fleet.output()
    wait_until(
        lambda: all(pid_gone(pid) for pid in janus_pids), timeout=30, what="every Janus stopped"
    )


@pytest.mark.timeout(180)
def test_without_janus_on_path_the_fleet_says_so_and_simulates_the_mhs(
    start_fleet: StartFleet, env: dict[str, str], tmp_path: Path
) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    no_janus = {**env, "PATH": f"{bare}{os.pathsep}{Path(sys.executable).parent}"}
    fleet = DevFleet(no_janus, tmp_path / "bare.out", "--mcs", "1", "--mhs", "2", media=True)
    try:
        out = fleet.output()
        assert (
            "darktower dev: janus is not installed (apt install janus): the MHs are simulated "
            "(mh-sim), signaling only, no audio or video"
        ) in out, out
        assert "media: none (simulated MHs, signaling only)" in out, out
        for name in ("mh-1", "mh-2"):
            assert "mh-sim" in psutil.Process(fleet.pids()[name]).cmdline()
        assert fleet.interrupt() == 0, fleet.output()
    finally:
        fleet.close()


@pytest.mark.parametrize(
    ("mhs", "force_sim", "janus", "real", "note"),
    [
        (4, False, "/usr/bin/janus", True, ""),
        (4, True, "/usr/bin/janus", False, "simulated MHs (--mh-sim)"),
        (4, False, None, False, "janus is not installed (apt install janus)"),
        (4, True, None, False, "simulated MHs (--mh-sim)"),
        (0, False, "/usr/bin/janus", False, ""),
    ],
)
def test_choose_mhs(mhs: int, force_sim: bool, janus: str | None, real: bool, note: str) -> None:
    chosen, said = choose_mhs(mhs=mhs, force_sim=force_sim, janus=janus)
    assert chosen is real
    assert said.startswith(note) and bool(said) == bool(note)
