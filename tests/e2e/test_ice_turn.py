"""ICE servers in join answers over a real GC (GC_ICE_SERVERS, GC_TURN_SECRET): the STUN URLs as
configured, the TURN ones with credentials minted for the joiner — checked here with an HMAC of
our own and by a real coturn (`turnserver` with `use-auth-secret`, on loopback): the GC's
credentials allocate a relay, a forged or an expired one is refused. The secret is in no log
line, metric or HTTP body; a GC with TURN URLs and no secret does not start."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from darktower.embedded.redis import free_port
from tests.e2e.browser import CHROMIUM
from tests.e2e.fleet import Fleet, GcProc
from tests.support.coturn import TURNSERVER, start_turnserver
from tests.support.netns import LOOPBACK_ONLY, missing_tools, run_isolated

pytestmark = pytest.mark.slow

SECRET = "Coturn-Shared-7c41e09b"
TTL_S = 600
UCLIENT = shutil.which("turnutils_uclient")
needs_coturn = pytest.mark.skipif(
    (TURNSERVER is None or UCLIENT is None) and not os.environ.get("CI"),
    reason="coturn is not installed (apt-get install coturn; CI has it)",
)


def _hmac(username: str) -> str:
    mac = hmac.new(SECRET.encode(), username.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def _gc(fleet: Fleet, database_url: str, **env: str) -> GcProc:
    mcs: dict[str, dict[str, str]] = {"mc-a": {}}
    mhs = {"mh-a1": "zone-a"}
    fleet.add_keys(mcs=mcs, mhs=mhs)
    gc = fleet.start_gc(database_url, wait=False, **env)
    fleet.start_mc(gc, "mc-a")
    fleet.start_mh_group(gc, mhs)
    gc.wait_ready()
    fleet.wait_fleet(gc, mcs=mcs, mhs=mhs)
    return gc


@pytest.fixture
def turnserver(tmp_path: Path) -> Iterator[int]:
    """coturn on 127.0.0.1 only, with the TURN REST API secret, no config file, no CLI, no
    TLS; its relay ports a small range at the end of this test run's port range. Yields its
    port; killed afterwards."""
    assert TURNSERVER is not None
    port = free_port()
    low, high = _relay_range()
    work = tmp_path / "coturn"
    work.mkdir()
    proc = start_turnserver(
        work, secret=SECRET, port=port, relay_ports=(low, high), loopback_peers=True
    )
    try:
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _relay_range() -> tuple[int, int]:
    """The last 40 ports of DARKTOWER_PORT_RANGE (free_port hands them out last), else
    40 ports of the kernel's (a fresh free one as the start)."""
    configured = os.environ.get("DARKTOWER_PORT_RANGE")
    if configured:
        high = int(configured.split("-")[1])
        return high - 39, high
    low = free_port()
    return low, low + 39


def _allocate(port: int, username: str, credential: str) -> subprocess.CompletedProcess[str]:
    """One TURN client (coturn's turnutils_uclient, client-to-client through the relay) with
    these credentials: exit 0 once it allocated relays and sent through them."""
    assert UCLIENT is not None
    return subprocess.run(
        [
            *(UCLIENT, "-u", username, "-w", credential, "-p", str(port)),
            *("-y", "-n", "1", "-m", "1", "-l", "100", "127.0.0.1"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _ice_of(gc: GcProc, meeting_id: str) -> tuple[str, list[dict[str, object]]]:
    answer = gc.join(meeting_id)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert SECRET not in answer.text
    return str(body["user_id"]), body["ice_servers"]


def test_join_answers_carry_stun_and_minted_turn_credentials(
    fleet: Fleet, database_url: str, redis_db: redis.Redis
) -> None:
    gc = _gc(
        fleet,
        database_url,
        GC_ALLOW_GUESTS="true",
        GC_ICE_SERVERS="stun:stun.example.org:3478,turn:127.0.0.1:3478?transport=udp,"
        "turns:turn.example.org:443?transport=tcp",
        GC_TURN_SECRET=SECRET,
        GC_TURN_CREDENTIAL_TTL_SECONDS=str(TTL_S),
    )
    before = int(time.time())
    user_id, servers = _ice_of(gc, "ice-1")
    after = int(time.time())
    assert servers[0] == {"urls": ["stun:stun.example.org:3478"]}  # no null credentials
    turn = servers[1]
    assert turn["urls"] == [
        "turn:127.0.0.1:3478?transport=udp",
        "turns:turn.example.org:443?transport=tcp",
    ]
    expiry, identity = str(turn["username"]).split(":", 1)
    assert identity == user_id
    assert before + TTL_S <= int(expiry) <= after + TTL_S
    assert turn["credential"] == _hmac(str(turn["username"]))
    # Each join its own: another joiner, another username and credential.
    other_id, other = _ice_of(gc, "ice-1")
    assert other_id != user_id and other[1]["credential"] != turn["credential"]

    schema = gc.json("/openapi.json")["components"]["schemas"]
    assert "ice_servers" in schema["JoinOut"]["properties"]
    assert set(schema["IceServerOut"]["properties"]) == {"urls", "username", "credential"}
    for text in (gc.metrics(), gc.get("/openapi.json").text, gc.log()):
        assert SECRET not in text


def test_without_ice_settings_the_answer_has_an_empty_list(
    fleet: Fleet, database_url: str, redis_db: redis.Redis
) -> None:
    gc = _gc(fleet, database_url, GC_ALLOW_GUESTS="true")
    assert _ice_of(gc, "ice-2")[1] == []


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"GC_ICE_SERVERS": "turn:turn.example.org:3478"}, ("GC_ICE_SERVERS", "GC_TURN_SECRET")),
        (
            {
                "GC_ICE_SERVERS": "stun:ok.example,https://turn.example.org",
                "GC_TURN_SECRET": SECRET,
            },
            ("GC_ICE_SERVERS",),
        ),
    ],
)
def test_a_gc_with_bad_ice_settings_exits_2_in_one_line(
    fleet: Fleet, database_url: str, env: dict[str, str], names: tuple[str, ...]
) -> None:
    gc = fleet.start_gc(database_url, wait=False, **env)
    assert gc.wait(timeout=30) == 2
    output = gc.log().strip()
    assert len(output.splitlines()) == 1, output
    assert "bad settings" in output and all(name in output for name in names), output
    assert SECRET not in output and "turn.example.org" not in output


@needs_coturn
def test_coturn_accepts_the_gc_credentials_and_refuses_forged_or_expired_ones(
    fleet: Fleet, database_url: str, redis_db: redis.Redis, turnserver: int
) -> None:
    gc = _gc(
        fleet,
        database_url,
        GC_ALLOW_GUESTS="true",
        GC_ICE_SERVERS=f"turn:127.0.0.1:{turnserver}?transport=udp",
        GC_TURN_SECRET=SECRET,
        GC_TURN_CREDENTIAL_TTL_SECONDS=str(TTL_S),
    )
    _, servers = _ice_of(gc, "ice-3")
    (turn,) = servers
    username, credential = str(turn["username"]), str(turn["credential"])

    accepted = _allocate(turnserver, username, credential)
    assert accepted.returncode == 0, accepted.stdout[-2000:] + accepted.stderr[-2000:]
    assert "Total lost packets 0" in accepted.stdout + accepted.stderr

    forged = _allocate(turnserver, username, _hmac(username + "x"))
    assert forged.returncode != 0
    assert "Cannot complete Allocation" in forged.stdout + forged.stderr
    # Another identity under the same credential: refused too.
    expiry, _ = username.split(":", 1)
    stolen = _allocate(turnserver, f"{expiry}:mallory", credential)
    assert stolen.returncode != 0
    # Well signed but expired (what a leaked credential becomes): refused.
    old = f"{int(time.time()) - 5}:someone"
    expired = _allocate(turnserver, old, _hmac(old))
    assert expired.returncode != 0
    assert "Cannot complete Allocation" in expired.stdout + expired.stderr


_BROWSER_MISSING = missing_tools(
    ("chromium", CHROMIUM.exists()), ("turnserver", TURNSERVER is not None)
)


@pytest.mark.skipif(
    bool(_BROWSER_MISSING) and not os.environ.get("CI"),
    reason=f"missing: {', '.join(_BROWSER_MISSING)} (CI has them)",
)
def test_chromium_gets_a_relay_candidate_with_the_minted_credentials_only(
    tmp_path: Path,
) -> None:
    # In a network namespace with only `lo`: coturn and the browser reach nothing else.
    result = run_isolated(
        "tests.e2e.turn_relay_scenario", tmp_path, setup=LOOPBACK_ONLY, timeout=120
    )
    assert "failed" not in result, result
    assert result["minted"]["candidates"] == ["relay 127.0.0.1"], result
    assert result["forged"] == {"candidates": [], "errors": [401]}, result
    assert result["expired"] == {"candidates": [], "errors": [401]}, result
