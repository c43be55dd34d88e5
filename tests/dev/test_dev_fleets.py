"""Several `darktower dev` fleets of one user: each has its own state file, `join`/`status`
say which one they use and name the others, and stopping one leaves the other's state alone."""

from __future__ import annotations

import json
import re

import pytest

from tests.dev.support import StartFleet, cli


@pytest.mark.timeout(240)
def test_two_fleets_never_confuse_each_other(start_fleet: StartFleet, env: dict[str, str]) -> None:
    first = start_fleet("--mcs", "1", "--mhs", "0")
    second = start_fleet("--mcs", "1", "--mhs", "2")
    first_url, second_url = first.state()["gc_url"], second.state()["gc_url"]
    assert isinstance(first_url, str) and isinstance(second_url, str)
    assert first_url != second_url
    assert first.state_file != second.state_file
    assert first.state()["pid"] == first.proc.pid and second.state()["pid"] == second.proc.pid
    # The second fleet knew of the first when it started: its hint names its own GC.
    assert f"other dev fleets running: pid {first.proc.pid} at {first_url}" in second.output()
    assert re.search(rf"^try: .* join standup --gc-url {second_url}$", second.output(), re.M)

    # Without --gc-url: the newest fleet, said on stderr, the other named with how to pick.
    for args in (["status"], ["join", "standup"]):
        done = cli(env, *args)
        assert done.returncode == 0, done.stderr
        assert f"using the dev fleet pid {second.proc.pid} at {second_url}" in done.stderr
        assert "2 dev fleets are running" in done.stderr
        assert f"pid {first.proc.pid} at {first_url}" in done.stderr
        assert "--gc-url" in done.stderr
    assert json.loads(cli(env, "join", "standup").stdout)["mc_client_endpoint"].startswith(
        "http://127.0.0.1:"
    )

    # An explicit choice needs no note.
    explicit = cli(env, "status", "--gc-url", first_url)
    assert explicit.returncode == 0, explicit.stderr
    assert "dev fleet" not in explicit.stderr
    by_env = cli({**env, "DARKTOWER_GC_URL": first_url}, "status")
    assert by_env.returncode == 0, by_env.stderr
    assert "dev fleet" not in by_env.stderr
    assert first_url in explicit.stdout and first_url in by_env.stdout

    # Stopping the newest leaves the other's state intact; join/status then find that one.
    first_state = first.state_file.read_bytes()
    assert second.interrupt() == 0
    assert not second.state_file.exists()
    assert first.state_file.read_bytes() == first_state
    assert first.proc.poll() is None
    alone = cli(env, "status")
    assert alone.returncode == 0, alone.stderr
    assert f"using the dev fleet pid {first.proc.pid} at {first_url}" in alone.stderr
    assert "dev fleets are running" not in alone.stderr
    assert first.interrupt() == 0
    assert first.children_left() == [] and second.children_left() == []
