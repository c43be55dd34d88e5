"""The review's impersonation attack on a running fleet of processes (issue 13).

A GC, mc-1 and mc-2 (each on its own key, bound to its id) and two MHs. The attacker holds
mc-2's genuine key and registers as mc-1 with its own endpoints, then sends a DRAINING
heartbeat for mc-1: both are PERMISSION_DENIED, the registry still shows mc-1's real endpoint
and health, and the next twelve joins all land on the real MCs (the review saw 5 of 12 go to
the fake MC).
"""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio
import pytest

from darktower.auth.client import ServiceTokenProvider
from darktower.auth.keys import load_private_key
from darktower.auth.tokens import GC_AUDIENCE, SERVICE_PROFILES
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc
from tests.e2e.fleet import REGION, Fleet, aio_grpc_channel, metric

pytestmark = pytest.mark.slow

ATTACKER = "http://127.0.0.1:9"  # discard: nothing a join could reach


async def impersonate(fleet: Fleet, gc_endpoint: str) -> list[grpc.StatusCode]:
    service_type, scope = SERVICE_PROFILES["mc"]
    stolen = ServiceTokenProvider(
        load_private_key(fleet.keys.key("mc", "mc-2")),
        service_type=service_type,
        scope=scope,
        issuer="mc-1",  # what the attacker claims; the key vouches for mc-2 only
        subject="mc-2",
        audience=GC_AUDIENCE,
    )
    register = pb.RegisterMCRequest(
        id="mc-1",
        region=REGION,
        grpc_endpoint=ATTACKER,
        webtransport_endpoint="https://attacker.example:4433",
        max_meetings=1000,
        max_participants=10000,
    )
    capacity = pb.ControllerCapacity(max_meetings=1000, max_participants=10000)
    draining = pb.FastHeartbeatRequest(controller_id="mc-1", capacity=capacity, health=pb.DRAINING)
    codes = []
    async with aio_grpc_channel(gc_endpoint, fleet.ca_file) as channel:
        stub = pb_grpc.GlobalControllerServiceStub(channel)
        for call in (
            stub.RegisterMC(register, metadata=stolen.metadata(), timeout=10),
            stub.FastHeartbeat(draining, metadata=stolen.metadata(), timeout=10),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            assert info.value.details() == "caller may not act for this id"
            codes.append(info.value.code())
    return codes


def test_an_mc_impersonating_another_is_refused_and_joins_never_reach_it(
    fleet: Fleet, database_url: str
) -> None:
    mhs = {"mh-1": "zone-a", "mh-2": "zone-b"}
    # Joins as guests where the GC knows access tokens (ignored where it does not).
    gc = fleet.start_gc(database_url, wait=False, GC_ALLOW_GUESTS="true")
    for mc_id in ("mc-1", "mc-2"):
        fleet.start_mc(gc, mc_id)
    fleet.start_mh_group(gc, mhs)
    gc.wait_ready()
    fleet.wait_fleet(gc, mcs=["mc-1", "mc-2"], mhs=mhs)
    real = {mc_id: c["grpc_endpoint"] for mc_id, c in gc.controllers().items()}

    codes = asyncio.run(impersonate(fleet, gc.grpc_endpoint))

    assert codes == [grpc.StatusCode.PERMISSION_DENIED] * 2
    assert metric(gc.metrics(), "gc_identity_refusals_total", rpc="RegisterMC") == 1.0
    assert metric(gc.metrics(), "gc_identity_refusals_total", rpc="FastHeartbeat") == 1.0
    controllers = gc.controllers()
    assert {m: c["grpc_endpoint"] for m, c in controllers.items()} == real
    assert controllers["mc-1"]["health"] == "healthy"
    hosts = []
    for i in range(12):
        answer = gc.join(f"after-attack-{i}")
        assert answer.status_code == 200, answer.text
        hosts.append(answer.json()["mc_grpc_endpoint"])
    assert ATTACKER not in hosts
    assert set(hosts) <= set(real.values())
