"""`darktower dev` runs every gRPC hop on TLS by default (a CA of its own per fleet) and
plaintext with `--no-tls`; either way a join over the CLI works as typed. Its services sign
with one key per instance, each bound to its id (no shared trio key)."""

from __future__ import annotations

import json

import pytest

from darktower.auth.keys import load_trusted_keys
from darktower.auth.service_types import ServiceType
from tests.dev.support import StartFleet, cli

INSTANCES = {
    "gc": (ServiceType.GLOBAL_CONTROLLER, ["gc-1"]),
    "mc": (ServiceType.MEETING_CONTROLLER, ["mc-1", "mc-2"]),
    "mh": (ServiceType.MEDIA_HANDLER, ["mh-1"]),
}


@pytest.mark.timeout(240)
def test_dev_runs_grpc_on_tls_by_default_and_plaintext_with_no_tls(
    start_fleet: StartFleet, env: dict[str, str]
) -> None:
    fleet = start_fleet("--mcs", "2", "--mhs", "1")
    joined = cli(env, "join", "standup")
    assert joined.returncode == 0, joined.stderr
    answer = json.loads(joined.stdout)
    assert answer["mc_grpc_endpoint"].startswith("https://127.0.0.1:")
    # Browsers open the dashboard and join page: the dev HTTP and WebSockets stay plain.
    assert answer["signaling_url"].startswith("ws://127.0.0.1:")

    status = cli(env, "status", "--json")
    assert status.returncode == 0, status.stderr
    controllers = json.loads(status.stdout)["controllers"]
    assert len(controllers) == 2
    assert all(c["grpc_endpoint"].startswith("https://127.0.0.1:") for c in controllers)
    table = cli(env, "status")
    assert table.returncode == 0 and table.stdout.count("https://127.0.0.1:") == 2

    logs = fleet.logs()
    assert "serving gRPC (TLS)" in (logs / "gc-1.log").read_text()
    for name in ("mc-1", "mc-2"):
        log = (logs / f"{name}.log").read_text()
        assert "serving gRPC (TLS)" in log and "registered with the GC at https://" in log
    assert "registered" in (logs / "mh-1.log").read_text()
    # One key pair per instance, bound to it in the file, and no unbound (shared) key anywhere.
    keys = logs / "keys"
    assert not any(keys.glob("*.pub")) and not any(keys.glob("*.key"))
    for service, (service_type, ids) in INSTANCES.items():
        assert sorted(p.name for p in (keys / service).glob("*.pub")) == [f"{i}.pub" for i in ids]
        for trusted in load_trusted_keys([keys / service]):
            assert trusted.service_type == service_type
            assert trusted.path is not None and trusted.instance_id == trusted.path.stem
    assert fleet.interrupt() == 0
    assert fleet.children_left() == []

    plain = start_fleet("--mcs", "1", "--mhs", "1", "--no-tls")
    joined = cli(env, "join", "standup")
    assert joined.returncode == 0, joined.stderr
    assert json.loads(joined.stdout)["mc_grpc_endpoint"].startswith("http://127.0.0.1:")
    assert "TLS" not in (plain.logs() / "mc-1.log").read_text()
    assert plain.interrupt() == 0
