"""TLS between real processes: a fleet (GC, 2 MCs, 2 MHs) whose every gRPC hop is TLS and
whose GC HTTP API and MC client WebSockets are HTTPS/WSS — MCs and MHs register, a join over
the CLI places a meeting on an MC (the GC's assignment call is TLS), a client joins over WSS;
a CLI without the CA and an MC with the wrong CA fail with a line naming the peer."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from darktower.auth.certs import generate_certs, parse_hosts
from darktower.auth.fleet_keys import FleetKeys
from darktower.client.session import ClientSession
from darktower.dev.fleet import Fleet, FleetPorts
from tests.mc.processes import McProcesses
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

DARKTOWER = [sys.executable, "-m", "darktower"]


@pytest.fixture
def fleet(tmp_path: Path, redis_url: str) -> Iterator[Fleet]:
    started = Fleet(
        mcs=2,
        mhs=2,
        redis_url=redis_url,
        ports=FleetPorts(any_free=True),
        workdir=tmp_path / "fleet",
        https=True,
    )
    (tmp_path / "fleet").mkdir()
    try:
        started.start()
        yield started
    finally:
        started.stop()


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DARKTOWER_")}
    return subprocess.run(
        [*DARKTOWER, *args],
        env={**base, "DARKTOWER_DEV_STATE": "/nonexistent", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_hop_on_tls_registers_places_and_lets_a_client_join_over_wss(
    fleet: Fleet, redis_client: object
) -> None:
    assert fleet.ca_file is not None
    ca = str(fleet.ca_file)
    assert fleet.gc_url.startswith("https://127.0.0.1:")

    done = cli("join", "standup", "--gc-url", fleet.gc_url, "--ca-file", ca)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["mc_grpc_endpoint"].startswith("https://127.0.0.1:")
    assert answer["mc_client_endpoint"].startswith("https://127.0.0.1:")
    assert answer["signaling_url"].startswith("wss://127.0.0.1:")
    assert answer["media_handlers"], answer

    # Every MC and MH registered over TLS; the MCs advertise https:// endpoints.
    status = cli("status", "--json", "--gc-url", fleet.gc_url, env={"DARKTOWER_CA_FILE": ca})
    assert status.returncode == 0, status.stderr
    controllers = json.loads(status.stdout)["controllers"]
    assert sorted(c["id"] for c in controllers) == ["mc-1", "mc-2"]
    assert all(c["grpc_endpoint"].startswith("https://127.0.0.1:") for c in controllers)
    assert all(c["webtransport_endpoint"].startswith("https://") for c in controllers)
    for service in fleet.services:
        if service.kind in ("mc", "mh"):
            assert "TLS handshake failed" not in service.log.read_text()
    mc_logs = "".join(s.log.read_text() for s in fleet.services if s.kind == "mc")
    assert f"registered with the GC at {fleet.gc.grpc}" in mc_logs
    assert "serving gRPC (TLS)" in fleet.gc.log.read_text()

    # Without the CA the CLI says why, naming the GC.
    untrusting = cli("join", "standup", "--gc-url", fleet.gc_url)
    assert untrusting.returncode == 2
    assert (
        f"cannot reach the GC at {fleet.gc_url}: TLS handshake failed (certificate verify "
        "failed: unable to get local issuer certificate)" in untrusting.stderr
    )


async def test_a_client_session_joins_over_wss_with_the_ca(fleet: Fleet) -> None:
    assert fleet.ca_file is not None
    trusting = ssl.create_default_context(cafile=fleet.ca_file)
    session = ClientSession(fleet.gc_url, "wss-meeting", display_name="Ada", ssl_context=trusting)
    try:
        answer = await session.join()
        assert answer.participant_id
        assert session.signaling_url is not None and session.signaling_url.startswith("wss://")
        await session.leave()
    finally:
        await session.aclose()

    stranger = ClientSession(fleet.gc_url, "wss-meeting", display_name="Eve", max_attempts=1)
    try:
        with pytest.raises(Exception, match="TLS handshake failed"):
            await stranger.join()
    finally:
        await stranger.aclose()


def test_an_mc_with_the_wrong_ca_says_why_it_cannot_register(
    fleet: Fleet, tmp_path: Path, redis_url: str
) -> None:
    other = tmp_path / "other-ca"
    generate_certs(other, "mc-x", parse_hosts("127.0.0.1"))
    keys = FleetKeys(fleet.key_dir)
    processes = McProcesses(tmp_path, keys.trusted("gc"))
    try:
        wrong_ca = processes.start(
            redis_url,
            id="mc-wrong-ca",
            gc_endpoint=fleet.gc.grpc,
            service_key_file=str(keys.add("mc", "mc-wrong-ca")),
            tls_cert_file=str(other / "mc-x.crt"),
            tls_key_file=str(other / "mc-x.key"),
            tls_ca_file=str(other / "ca.crt"),
        )
        plaintext = processes.start(
            redis_url,
            id="mc-plaintext",
            gc_endpoint=fleet.gc.grpc.replace("https://", "http://"),
            service_key_file=str(keys.add("mc", "mc-plaintext")),
        )
        expected = (
            f"cannot reach the GC at {fleet.gc.grpc}: TLS handshake failed "
            "(certificate verify failed: unknown CA)"
        )
        wait_until(lambda: expected in wrong_ca.log(), timeout=60, what="the unknown-CA line")
        plain_url = fleet.gc.grpc.replace("https://", "http://")
        expected_plain = (
            f"cannot reach the GC at {plain_url}: the peer closed the connection "
            "(is it a TLS port? then use https://)"
        )
        wait_until(lambda: expected_plain in plaintext.log(), timeout=60, what="the plaintext line")
        assert "PRIVATE KEY" not in wrong_ca.log() + plaintext.log()
    finally:
        processes.close()
