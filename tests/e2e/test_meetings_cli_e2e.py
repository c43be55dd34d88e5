"""`darktower meetings` as the README types it (section "Application API"), next to a fleet
that looks like a running `darktower dev` (its state record names the GC and the API key, so
the commands mint their own admin token): a real GC without guests, an MC, an MH, and Ada
connected as a real WebSocket client who is muted, removed and sees the meeting end."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from darktower.auth.access_tokens import mint_access_token
from darktower.auth.api_keys import generate_api_key, write_api_key_file
from darktower.client.session import ClientSession, Ended
from darktower.dev.state import FleetRecord, StateDir
from darktower.signaling.protocol import LeaveReason, Muted
from tests.e2e.fleet import Fleet
from tests.support.readme import bash_block_after, run_bash

# Six commands, each a fresh interpreter: on a busy two-core machine each takes seconds.
pytestmark = pytest.mark.timeout(300)


async def test_the_readme_meeting_commands_run_as_typed(
    fleet: Fleet, database_url: str, tmp_path: Path
) -> None:
    key = generate_api_key()
    key_file = tmp_path / "api-key.json"
    write_api_key_file(key_file, key)
    gc = fleet.start_gc(
        database_url, wait=False, GC_API_KEY_FILES=str(key_file), GC_ALLOW_GUESTS="false"
    )
    fleet.start_mc(gc, "mc-1")
    fleet.start_mh_group(gc, {"mh-1": "zone-a"})
    gc.wait_ready()
    admin = mint_access_token(key, identity="ops", meeting_id=None, admin=True)
    gc.client.headers["Authorization"] = f"Bearer {admin}"
    fleet.wait_fleet(gc, mcs=["mc-1"], mhs=["mh-1"])
    state = tmp_path / "dev-state"
    with StateDir(state) as records:
        records.publish(
            FleetRecord(
                os.getpid(), gc.http_url, time.time(), str(tmp_path), api_key_file=str(key_file)
            )
        )
    block = bash_block_after("\n## Application API\n")
    lines = block.strip().splitlines()
    assert [line.split()[:3] for line in lines] == [
        ["darktower", "meetings", "create"],
        ["darktower", "meetings", "list"],
        ["darktower", "meetings", "show"],
        ["darktower", "meetings", "mute"],
        ["darktower", "meetings", "kick"],
        ["darktower", "meetings", "end"],
    ]
    env = f"export DARKTOWER_DEV_STATE={state}; unset DARKTOWER_GC_URL DARKTOWER_ACCESS_TOKEN\n"
    created = await asyncio.to_thread(run_bash, env + lines[0], tmp_path, strict=True)
    assert created.returncode == 0, created.stderr
    assert '"created": true' in created.stdout and "sprint review" in created.stdout

    ada_token = mint_access_token(key, identity="ada", meeting_id="standup", name="Ada")
    async with ClientSession(
        gc.http_url, "standup", display_name="Ada", access_token=ada_token
    ) as ada:
        events = ada.events()
        answer = await ada.join()
        assert answer.metadata == '{"agenda": "sprint review"}'
        out: list[str] = []
        for line in lines[1:]:  # one at a time: each gets run_bash's whole time limit
            ran = await asyncio.to_thread(run_bash, env + line, tmp_path, strict=True)
            assert ran.returncode == 0, (line, ran.stderr)
            out += ran.stdout.splitlines()
        # (participants as the MC last reported them: 0 or 1 so soon after the join)
        assert out[0].startswith("standup  mc-1  ") and out[0].endswith(" participants")
        assert out[1] == "1 shown of 1 meetings (from 0)"
        assert out[2] == "standup on mc-1 (active), 1 participants"
        assert "max_participants=50" in out[3] and "empty_timeout_seconds=600" in out[3]
        assert out[4] == "ada  Ada  participant  [host]"
        assert out[5:] == [
            "muted ada in standup",
            "removed ada from standup (1 sessions)",
            "ended standup (0 participants)",
        ]
        seen: list[object] = []

        async def until_ended() -> None:
            async for event in events:
                seen.append(event)
                if isinstance(event, Ended):
                    return

        await asyncio.wait_for(until_ended(), 20)
        assert any(isinstance(e, Muted) and e.by == "api" for e in seen)
        assert seen[-1] == Ended(LeaveReason.REMOVED.value)
    assert gc.get("/v1/meetings/standup").status_code == 404

    # The error paths: a bad id never leaves the machine (exit 2), a GC refusal is one line.
    bad = await asyncio.to_thread(run_bash, env + "darktower meetings kick standup 'a b'", tmp_path)
    assert bad.returncode == 2 and "invalid identity" in bad.stderr
    gone = await asyncio.to_thread(run_bash, env + "darktower meetings end standup", tmp_path)
    assert gone.returncode == 1
    assert "GC answered 404: meeting_not_found" in gone.stderr
    # Ended, the meeting is forgotten with its bar: the same token joins a new one.
    async with ClientSession(
        gc.http_url, "standup", display_name="Ada", access_token=ada_token
    ) as again:
        assert (await again.join()).metadata is None
        await again.leave()
