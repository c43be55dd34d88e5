"""Identity binding at the GC (issue 13), the review's attacks over real gRPC on loopback.

A real `GcApp` (SQLite store, gRPC and HTTP on free loopback ports) trusts the per-instance
key directories of a fleet: mc-1, mc-2, mh-1, mh-2, each key bound to its id. The attacker
holds mc-2's (or mh-2's) genuine key and acts for mc-1 (mh-1): every such call is
PERMISSION_DENIED with the one fixed message, counted in `gc_identity_refusals_total{rpc}`,
and the registry is as before. The same calls made by the rightful instance pass, so the
refusals are not a GC that refuses everything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from prometheus_client import REGISTRY

from darktower.auth.client import ServiceTokenProvider
from darktower.auth.fleet_keys import FleetKeys, generate_fleet_keys
from darktower.auth.keys import generate_key_files, load_private_key, load_service_key
from darktower.auth.tokens import GC_AUDIENCE, SERVICE_PROFILES
from darktower.embedded.redis import free_port
from darktower.gc.domain import Health
from darktower.gc.server import GcApp
from darktower.gc.settings import GcSettings
from darktower.runtime.serving import StartupError
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

REGION = "local"
REFUSAL = "caller may not act for this id"
Metadata = tuple[tuple[str, str], ...]


def tokens(keys: FleetKeys, service: str, instance: str, *, acting_as: str = "") -> Metadata:
    """`instance`'s genuine token (its own bound key, `sub` = its id, the GC audience)."""
    service_type, scope = SERVICE_PROFILES[service]
    return ServiceTokenProvider(
        load_private_key(keys.key(service, instance)),
        service_type=service_type,
        scope=scope,
        issuer=acting_as or instance,
        subject=instance,
        audience=GC_AUDIENCE,
    ).metadata()


def refusals(rpc: str) -> float:
    value = REGISTRY.get_sample_value("gc_identity_refusals_total", {"rpc": rpc})
    assert value is not None, "created up front"
    return value


def settings(tmp_path: Path, keys: FleetKeys, **overrides: Any) -> GcSettings:
    values: dict[str, Any] = {
        "id": "gc-1",
        "region": REGION,
        "grpc_bind": f"127.0.0.1:{free_port()}",
        "http_bind": f"127.0.0.1:{free_port()}",
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'gc.sqlite3'}",
        "service_key_file": keys.key("gc", "gc-1"),
        "trusted_mc_key_files": [keys.trusted("mc")],
        "trusted_mh_key_files": [keys.trusted("mh")],
        "heartbeat_flush_ms": 0,
    }
    values.update(overrides)
    return GcSettings(**values)


@dataclass
class Gc:
    app: GcApp
    keys: FleetKeys
    mcs: pb_grpc.GlobalControllerServiceAsyncStub
    mhs: pb_grpc.MediaHandlerRegistryServiceAsyncStub

    def mc(self, instance: str) -> Metadata:
        return tokens(self.keys, "mc", instance)

    def mh(self, instance: str) -> Metadata:
        return tokens(self.keys, "mh", instance)

    @property
    def store(self) -> Any:
        assert self.app.store is not None
        return self.app.store


@pytest.fixture
def keys(tmp_path: Path) -> FleetKeys:
    return generate_fleet_keys(tmp_path / "keys", mcs=["mc-1", "mc-2"], mhs=["mh-1", "mh-2"])


@pytest.fixture
async def gc(tmp_path: Path, keys: FleetKeys) -> AsyncIterator[Gc]:
    app = GcApp(settings(tmp_path, keys))
    await app.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}")
    try:
        yield Gc(
            app,
            keys,
            pb_grpc.GlobalControllerServiceStub(channel),
            pb_grpc.MediaHandlerRegistryServiceStub(channel),
        )
    finally:
        await channel.close(None)
        await app.stop()


def register_mc(mc_id: str, endpoint: str) -> pb.RegisterMCRequest:
    return pb.RegisterMCRequest(
        id=mc_id,
        region=REGION,
        grpc_endpoint=endpoint,
        webtransport_endpoint=f"https://{mc_id}.example:4433",
        max_meetings=100,
        max_participants=1000,
    )


def register_mh(mh_id: str, endpoint: str) -> pb.RegisterMHRequest:
    return pb.RegisterMHRequest(
        handler_id=mh_id,
        region=REGION,
        webtransport_endpoint=endpoint,
        grpc_endpoint=f"http://{mh_id}.example:50053",
        max_streams=500,
        zone="zone-a",
    )


def beat(mc_id: str, health: pb.HealthStatus.ValueType) -> pb.FastHeartbeatRequest:
    capacity = pb.ControllerCapacity(
        max_meetings=100, current_meetings=0, max_participants=1000, current_participants=0
    )
    return pb.FastHeartbeatRequest(controller_id=mc_id, capacity=capacity, health=health)


async def denied(call: Awaitable[Any]) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert info.value.details() == REFUSAL


async def registered_mc_1(gc: Gc) -> None:
    await gc.mcs.RegisterMC(register_mc("mc-1", "http://127.0.0.1:7001"), metadata=gc.mc("mc-1"))
    await gc.mcs.FastHeartbeat(beat("mc-1", pb.HEALTHY), metadata=gc.mc("mc-1"))


async def test_register_mc_for_another_id_is_refused_and_the_registry_kept(gc: Gc) -> None:
    await registered_mc_1(gc)
    before = refusals("RegisterMC")
    evil = register_mc("mc-1", "http://127.0.0.1:6666")
    await denied(gc.mcs.RegisterMC(evil, metadata=gc.mc("mc-2")))
    # Even with the issuer claim saying mc-1: the bound key vouches for `sub` = mc-2 only.
    await denied(gc.mcs.RegisterMC(evil, metadata=tokens(gc.keys, "mc", "mc-2", acting_as="mc-1")))
    assert refusals("RegisterMC") == before + 2
    mc_1 = await gc.store.get_controller("mc-1")
    assert mc_1.grpc_endpoint == "http://127.0.0.1:7001"
    assert mc_1.health == Health.HEALTHY
    assert {c.id for c in await gc.store.list_controllers()} == {"mc-1"}


async def test_a_token_whose_sub_is_not_its_keys_instance_is_unauthenticated(gc: Gc) -> None:
    service_type, scope = SERVICE_PROFILES["mc"]
    forged = ServiceTokenProvider(
        load_private_key(gc.keys.key("mc", "mc-2")),
        service_type=service_type,
        scope=scope,
        issuer="mc-1",
        subject="mc-1",
        audience=GC_AUDIENCE,
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await gc.mcs.RegisterMC(
            register_mc("mc-1", "http://127.0.0.1:6666"), metadata=forged.metadata()
        )
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await gc.store.get_controller("mc-1") is None


@pytest.mark.parametrize("kind", ["fast", "comprehensive"])
async def test_draining_heartbeat_for_another_mc_is_refused(gc: Gc, kind: str) -> None:
    await registered_mc_1(gc)
    fast = beat("mc-1", pb.DRAINING)
    call: Awaitable[pb.HeartbeatResponse]
    if kind == "fast":
        rpc = "FastHeartbeat"
        call = gc.mcs.FastHeartbeat(fast, metadata=gc.mc("mc-2"))
    else:
        rpc = "ComprehensiveHeartbeat"
        request = pb.ComprehensiveHeartbeatRequest(
            controller_id="mc-1", capacity=fast.capacity, health=pb.DRAINING
        )
        call = gc.mcs.ComprehensiveHeartbeat(request, metadata=gc.mc("mc-2"))
    before = refusals(rpc)
    await denied(call)
    assert refusals(rpc) == before + 1
    assert (await gc.store.get_controller("mc-1")).health == Health.HEALTHY


async def test_meeting_end_for_another_mcs_meeting_is_refused_and_it_stays_live(gc: Gc) -> None:
    await registered_mc_1(gc)
    await gc.mcs.RegisterMC(register_mc("mc-2", "http://127.0.0.1:7002"), metadata=gc.mc("mc-2"))
    now = datetime.now(UTC)
    await gc.store.claim_meeting("standup", REGION, "gc-1", now, stale_claim_after=timedelta(30))
    await gc.store.activate_assignment("standup", REGION, "gc-1", "mc-1", [], now)
    notice = pb.NotifyMeetingEndedRequest(meeting_id="standup", region=REGION)
    before = refusals("NotifyMeetingEnded")
    await denied(gc.mcs.NotifyMeetingEnded(notice, metadata=gc.mc("mc-2")))
    assert refusals("NotifyMeetingEnded") == before + 1
    live = await gc.store.active_assignment("standup", REGION)
    assert live is not None and live.mc_id == "mc-1"
    # The rightful MC ends it; a repeat (nothing live any more) is acknowledged.
    assert (await gc.mcs.NotifyMeetingEnded(notice, metadata=gc.mc("mc-1"))).acknowledged
    assert await gc.store.active_assignment("standup", REGION) is None
    assert (await gc.mcs.NotifyMeetingEnded(notice, metadata=gc.mc("mc-2"))).acknowledged


async def test_register_mh_and_load_report_for_another_mh_are_refused(gc: Gc) -> None:
    await gc.mhs.RegisterMH(register_mh("mh-1", "https://mh-1:4433"), metadata=gc.mh("mh-1"))
    report = pb.MHLoadReportRequest(handler_id="mh-1", current_streams=1, health=pb.HEALTHY)
    await gc.mhs.SendLoadReport(report, metadata=gc.mh("mh-1"))
    registers, reports = refusals("RegisterMH"), refusals("SendLoadReport")
    evil = register_mh("mh-1", "https://attacker:4433")
    await denied(gc.mhs.RegisterMH(evil, metadata=gc.mh("mh-2")))
    draining = pb.MHLoadReportRequest(handler_id="mh-1", current_streams=999, health=pb.DRAINING)
    await denied(gc.mhs.SendLoadReport(draining, metadata=gc.mh("mh-2")))
    assert (refusals("RegisterMH"), refusals("SendLoadReport")) == (registers + 1, reports + 1)
    mh_1 = await gc.store.get_media_handler("mh-1")
    assert mh_1.webtransport_endpoint == "https://mh-1:4433"
    assert (mh_1.health, mh_1.current_streams) == (Health.HEALTHY, 1)


async def test_a_token_for_another_audience_is_unauthenticated(gc: Gc) -> None:
    service_type, scope = SERVICE_PROFILES["mc"]
    for_an_mc = ServiceTokenProvider(
        load_private_key(gc.keys.key("mc", "mc-1")),
        service_type=service_type,
        scope=scope,
        issuer="mc-1",
        audience="mc-2",
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await gc.mcs.RegisterMC(
            register_mc("mc-1", "http://127.0.0.1:7001"), metadata=for_an_mc.metadata()
        )
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def shared_key_gc(tmp_path: Path, keys: FleetKeys, *, opt_in: bool) -> tuple[GcApp, Metadata]:
    legacy = tmp_path / "legacy"
    generate_key_files(legacy)
    app = GcApp(
        settings(
            tmp_path,
            keys,
            trusted_mc_key_files=[legacy / "mc.pub"],
            allow_unbound_keys=opt_in,
        )
    )
    service_type, scope = SERVICE_PROFILES["mc"]
    metadata = ServiceTokenProvider(
        load_private_key(legacy / "mc.key"),
        service_type=service_type,
        scope=scope,
        issuer="mc-1",
        audience=GC_AUDIENCE,
    ).metadata()
    return app, metadata


@pytest.mark.parametrize("opt_in", [False, True], ids=["refused", "opted-in"])
async def test_an_unbound_shared_key_only_with_the_opt_in(
    tmp_path: Path, keys: FleetKeys, opt_in: bool
) -> None:
    app, metadata = await shared_key_gc(tmp_path, keys, opt_in=opt_in)
    await app.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
            call = pb_grpc.GlobalControllerServiceStub(channel).RegisterMC(
                register_mc("mc-1", "http://127.0.0.1:7001"), metadata=metadata
            )
            if opt_in:
                assert (await call).accepted
            else:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert app.store is not None
        assert (await app.store.get_controller("mc-1") is not None) is opt_in
    finally:
        await app.stop()


def test_a_gc_key_bound_to_another_gc_is_refused_at_start(tmp_path: Path, keys: FleetKeys) -> None:
    keys.add("gc", "gc-2")
    assert load_service_key(keys.key("gc", "gc-2")).instance_id == "gc-2"
    with pytest.raises(StartupError) as info:
        GcApp(settings(tmp_path, keys, service_key_file=keys.key("gc", "gc-2")))
    assert str(info.value) == (
        "GC_SERVICE_KEY_FILE is bound to 'gc-2', not to this GC (GC_ID=gc-1)"
    )
