"""Audience-bound GC tokens (issue 13): an MC accepts only tokens minted for itself.

The review's attack, over real gRPC on loopback against two in-process MCs on one Redis: a
fake MC captures the GC token meant for it (aud = mc-1) and replays it to mc-2 with an evil MH
list for a meeting mc-1 hosts. mc-2 answers UNAUTHENTICATED (reason `wrong_audience`), hosts
nothing, and mc-1 is not fenced out. The GC's key is bound to gc-1; an unbound GC key is refused
without `MC_ALLOW_UNBOUND_KEYS`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import grpc.aio
import pytest
from prometheus_client import REGISTRY
from redis import asyncio as aioredis

from darktower.auth.client import ServiceTokenProvider
from darktower.auth.fleet_keys import FleetKeys, generate_fleet_keys
from darktower.auth.keys import generate_key_files, load_private_key
from darktower.auth.tokens import SERVICE_PROFILES
from darktower.wire.dark_tower import internal_pb2 as pb
from tests.support.mc import RunningMc, assign_request

Metadata = tuple[tuple[str, str], ...]
StartMc = Callable[..., Awaitable[RunningMc]]


def gc_token(key: Path, *, audience: str) -> Metadata:
    service_type, scope = SERVICE_PROFILES["gc"]
    return ServiceTokenProvider(
        load_private_key(key),
        service_type=service_type,
        scope=scope,
        issuer="gc-1",
        audience=audience,
    ).metadata()


def wrong_audience() -> float:
    value = REGISTRY.get_sample_value(
        "service_auth_failures_total", {"service": "mc", "reason": "wrong_audience"}
    )
    return value or 0.0


@pytest.fixture
def keys(tmp_path: Path) -> FleetKeys:
    return generate_fleet_keys(tmp_path / "keys")


async def start_bound(start_mc: StartMc, keys: FleetKeys, mc_id: str) -> RunningMc:
    mc = await start_mc(id=mc_id, trusted_gc_key_files=[keys.trusted("gc")])
    mc.metadata = gc_token(keys.key("gc", "gc-1"), audience=mc_id)
    return mc


def evil_request(meeting_id: str) -> pb.AssignMeetingWithMhRequest:
    return pb.AssignMeetingWithMhRequest(
        meeting_id=meeting_id,
        mh_assignments=[
            pb.MhAssignment(
                mh_id="mh-evil",
                webtransport_endpoint="https://attacker.example:4433",
                role=pb.MH_ROLE_PRIMARY,
            )
        ],
        requesting_gc_id="gc-1",
    )


async def test_a_gc_token_for_mc_1_replayed_to_mc_2_is_refused(
    start_mc: StartMc, keys: FleetKeys, redis_client: aioredis.Redis
) -> None:
    mc_1 = await start_bound(start_mc, keys, "mc-1")
    mc_2 = await start_bound(start_mc, keys, "mc-2")
    assert (await mc_1.assign("standup")).accepted
    captured = mc_1.metadata  # what a fake MC registered as mc-1's peer would have seen
    before = wrong_audience()

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await mc_2.stub.AssignMeetingWithMh(evil_request("standup"), metadata=captured)

    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert wrong_audience() == before + 1
    assert "standup" not in mc_2.app.controller.meetings
    assert await redis_client.get("meeting:{standup}:owner") == b"mc-1"
    assert "standup" in mc_1.app.controller.meetings
    # The honest token for mc-2 is admitted: the refusal is the audience, not the server.
    assert (await mc_2.assign("other")).accepted


async def test_a_token_without_an_audience_is_refused(start_mc: StartMc, keys: FleetKeys) -> None:
    mc = await start_bound(start_mc, keys, "mc-1")
    service_type, scope = SERVICE_PROFILES["gc"]
    no_audience = ServiceTokenProvider(
        load_private_key(keys.key("gc", "gc-1")),
        service_type=service_type,
        scope=scope,
        issuer="gc-1",
    ).metadata()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await mc.stub.AssignMeetingWithMh(assign_request("standup"), metadata=no_audience)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert mc.app.controller.meetings == {}


@pytest.mark.parametrize("opt_in", [False, True], ids=["refused", "opted-in"])
async def test_an_unbound_gc_key_only_with_the_opt_in(
    start_mc: StartMc, tmp_path: Path, opt_in: bool
) -> None:
    legacy = tmp_path / "legacy"
    generate_key_files(legacy)
    mc = await start_mc(
        id="mc-1", trusted_gc_key_files=[legacy / "gc.pub"], allow_unbound_keys=opt_in
    )
    call = mc.stub.AssignMeetingWithMh(
        assign_request("standup"), metadata=gc_token(legacy / "gc.key", audience="mc-1")
    )
    if opt_in:
        assert (await call).accepted
    else:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
