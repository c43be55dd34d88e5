"""`darktower dev` and the access model (README "Access model"): the fleet makes a dev API key
(0600, in its key directory, named in its state record), the GC trusts it and allows guests,
and `darktower join` / `darktower status` use the key by themselves."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import pytest

from darktower.auth.access_tokens import mint_access_token
from darktower.auth.api_keys import load_api_key_file
from tests.dev.support import StartFleet, cli


@pytest.mark.timeout(240)
def test_dev_makes_a_key_that_join_and_status_use(
    start_fleet: StartFleet, env: dict[str, str]
) -> None:
    fleet = start_fleet("--mcs", "1", "--mhs", "1")
    record = fleet.state()
    gc_url, key_path = record["gc_url"], record["api_key_file"]
    assert isinstance(gc_url, str) and isinstance(key_path, str)
    key_file = Path(key_path)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = load_api_key_file(key_file)
    assert key.secret not in fleet.output()

    # Guests are on: a join without a token is placed, as a guest.
    guest = httpx.post(f"{gc_url}/v1/meetings/standup/join", timeout=30)
    assert guest.status_code == 200, guest.text
    assert guest.json()["display_name"] == "Guest"
    # The GC trusts the dev key: a host token for the meeting joins as its identity.
    token = mint_access_token(key, identity="ada", meeting_id="standup", role="host")
    ada = httpx.post(
        f"{gc_url}/v1/meetings/standup/join",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert ada.status_code == 200 and ada.json()["user_id"] == "ada", ada.text

    # `darktower join` mints its own token (no name: the identity is the name, not "Guest").
    joined = cli(env, "join", "standup")
    assert joined.returncode == 0, joined.stderr
    answer = json.loads(joined.stdout)
    assert answer["user_id"].startswith("u-") and answer["display_name"] == answer["user_id"]
    status = cli(env, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert fleet.interrupt() == 0
    assert not key_file.exists()  # removed with the fleet's keys
