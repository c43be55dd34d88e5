"""The GC's gRPC services over a real grpc.aio server on loopback, with real tokens and the
real store (SQLite, or PostgreSQL with DARKTOWER_TEST_DATABASE_URL)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from prometheus_client import REGISTRY

from darktower.auth.client import ServiceTokenProvider
from darktower.auth.interceptor import GRPC_SERVER_OPTIONS, UNAUTHENTICATED_MESSAGE
from darktower.auth.keys import generate_key_files, load_private_key, load_public_keys
from darktower.auth.tokens import (
    GC_AUDIENCE,
    SCOPE_GC,
    SCOPE_MC,
    ServiceType,
    mint_service_token,
)
from darktower.embedded.redis import free_port
from darktower.gc.domain import Health
from darktower.gc.errors import GcUnavailable, InvalidGcRequest, NoControllerAvailable
from darktower.gc.grpc_auth import auth_interceptor
from darktower.gc.grpc_edge import INTERNAL_MESSAGE, UNAVAILABLE_MESSAGE, status_for
from darktower.gc.grpc_services import add_gc_services
from darktower.gc.heartbeats import HeartbeatBatcher, LoadReportBatcher
from darktower.gc.store import (
    DatabaseUnavailable,
    GcStore,
    StoreError,
    UnknownController,
    UnknownMediaHandler,
    create_engine,
)
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

REGION = "eu-west"
T0 = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
Metadata = tuple[tuple[str, str], ...]


class Clock:
    """The servicers' clock, moved by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Keys:
    dir: Path

    def provider(self, name: str, service_type: ServiceType, issuer: str) -> ServiceTokenProvider:
        return ServiceTokenProvider(
            load_private_key(self.dir / f"{name}.key"),
            service_type=service_type,
            scope=SCOPE_GC,
            issuer=issuer,
            audience=GC_AUDIENCE,
        )

    def mc(self, issuer: str = "mc-1") -> Metadata:
        return self.provider("mc", ServiceType.MEETING_CONTROLLER, issuer).metadata()

    def mh(self, issuer: str = "mh-1") -> Metadata:
        return self.provider("mh", ServiceType.MEDIA_HANDLER, issuer).metadata()

    def token(self, key: str, service_type: ServiceType, scope: str = SCOPE_GC) -> Metadata:
        signed = mint_service_token(
            load_private_key(self.dir / f"{key}.key"),
            service_type=service_type,
            scope=scope,
            issuer="someone",
            audience=GC_AUDIENCE,
        )
        return (("authorization", f"Bearer {signed}"),)

    def public(self, name: str) -> list[Any]:
        return list(load_public_keys([self.dir / f"{name}.pub"]))


@dataclass
class Gc:
    mcs: pb_grpc.GlobalControllerServiceAsyncStub
    mhs: pb_grpc.MediaHandlerRegistryServiceAsyncStub


StartGc = Callable[..., Awaitable[Gc]]


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    generate_key_files(tmp_path / "keys")
    return Keys(tmp_path / "keys")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def start_gc(keys: Keys, clock: Clock) -> AsyncIterator[StartGc]:
    """Start a GC gRPC server on 127.0.0.1 over a store; everything stops at teardown."""
    servers: list[grpc.aio.Server] = []
    channels: list[grpc.aio.Channel] = []

    async def start(
        store: GcStore,
        *,
        trust_gc_keys: bool = True,
        heartbeats: HeartbeatBatcher | None = None,
        load_reports: LoadReportBatcher | None = None,
    ) -> Gc:
        # The legacy shared trio, by opt-in: identity binding with bound keys is
        # tests/gc/test_identity_binding.py.
        interceptor = auth_interceptor(
            keys.public("mc"),
            keys.public("mh"),
            keys.public("gc") if trust_gc_keys else (),
            allow_unbound_keys=True,
        )
        server = grpc.aio.server(interceptors=[interceptor], options=GRPC_SERVER_OPTIONS)
        add_gc_services(
            server,
            store,
            region=REGION,
            fast_heartbeat_ms=1500,
            comprehensive_heartbeat_ms=4500,
            load_report_ms=2500,
            clock=clock,
            heartbeats=heartbeats,
            load_reports=load_reports,
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        channels.append(channel)
        return Gc(
            pb_grpc.GlobalControllerServiceStub(channel),
            pb_grpc.MediaHandlerRegistryServiceStub(channel),
        )

    yield start
    for channel in channels:
        await channel.close(None)
    for server in servers:
        await server.stop(None)


@pytest.fixture
async def gc(start_gc: StartGc, store: GcStore) -> Gc:
    return await start_gc(store)


def register_mc(**overrides: Any) -> pb.RegisterMCRequest:
    fields: dict[str, Any] = {
        "id": "mc-1",
        "region": REGION,
        "grpc_endpoint": "http://127.0.0.1:50052",
        "webtransport_endpoint": "https://mc-1.example:4433",
        "max_meetings": 100,
        "max_participants": 1000,
    }
    fields.update(overrides)
    return pb.RegisterMCRequest(**fields)


def capacity(meetings: int = 3, participants: int = 30) -> pb.ControllerCapacity:
    return pb.ControllerCapacity(
        max_meetings=100,
        current_meetings=meetings,
        max_participants=1000,
        current_participants=participants,
    )


def register_mh(**overrides: Any) -> pb.RegisterMHRequest:
    fields: dict[str, Any] = {
        "handler_id": "mh-1",
        "region": REGION,
        "webtransport_endpoint": "https://mh-1.example:4433",
        "grpc_endpoint": "http://mh-1.example:50053",
        "max_streams": 500,
        "zone": "eu-west-1a",
    }
    fields.update(overrides)
    return pb.RegisterMHRequest(**fields)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    assert value is not None, f"{name}{labels} is created up front"
    return value


async def rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


# --- MC registration and heartbeats --------------------------------------------------------


async def test_register_then_heartbeats_update_the_store(
    gc: Gc, store: GcStore, keys: Keys, clock: Clock
) -> None:
    answer = await gc.mcs.RegisterMC(register_mc(), metadata=keys.mc())
    assert answer.accepted
    assert (answer.fast_heartbeat_interval_ms, answer.comprehensive_heartbeat_interval_ms) == (
        1500,
        4500,
    )
    registered = await store.get_controller("mc-1")
    assert registered is not None
    assert registered.health is Health.PENDING and registered.last_heartbeat_at is None
    assert registered.registered_at == T0
    assert registered.webtransport_endpoint == "https://mc-1.example:4433"

    clock.now = T0 + timedelta(seconds=2)
    ok_before = sample("gc_heartbeats_total", type="fast", result="ok")
    beat = await gc.mcs.FastHeartbeat(
        pb.FastHeartbeatRequest(controller_id="mc-1", capacity=capacity(), health=pb.HEALTHY),
        metadata=keys.mc(),
    )
    assert beat.acknowledged and beat.timestamp == ms(clock.now)
    assert sample("gc_heartbeats_total", type="fast", result="ok") == ok_before + 1
    after_fast = await store.get_controller("mc-1")
    assert after_fast is not None
    assert after_fast.health is Health.HEALTHY
    assert (after_fast.current_meetings, after_fast.current_participants) == (3, 30)
    assert after_fast.last_heartbeat_at == clock.now

    clock.now = T0 + timedelta(seconds=5)
    beat = await gc.mcs.ComprehensiveHeartbeat(
        pb.ComprehensiveHeartbeatRequest(
            controller_id="mc-1",
            capacity=capacity(meetings=81, participants=800),
            health=pb.DEGRADED,
            cpu_usage_percent=42.5,
            memory_usage_percent=61.25,
        ),
        metadata=keys.mc(),
    )
    assert beat.acknowledged and beat.timestamp == ms(clock.now)
    after_full = await store.get_controller("mc-1")
    assert after_full is not None
    assert after_full.health is Health.DEGRADED
    assert (after_full.current_meetings, after_full.current_participants) == (81, 800)
    assert (after_full.cpu_percent, after_full.memory_percent) == (42.5, 61.25)
    assert after_full.last_heartbeat_at == clock.now


async def test_reregistration_resets_to_pending(gc: Gc, store: GcStore, keys: Keys) -> None:
    await gc.mcs.RegisterMC(register_mc(), metadata=keys.mc())
    await gc.mcs.FastHeartbeat(
        pb.FastHeartbeatRequest(controller_id="mc-1", capacity=capacity(), health=pb.HEALTHY),
        metadata=keys.mc(),
    )
    await gc.mcs.RegisterMC(
        register_mc(max_meetings=7, webtransport_endpoint=""), metadata=keys.mc()
    )
    again = await store.get_controller("mc-1")
    assert again is not None
    assert again.health is Health.PENDING and again.max_meetings == 7
    assert again.webtransport_endpoint is None


async def test_a_registration_flushes_pending_beats_first(
    start_gc: StartGc, store: GcStore, keys: Keys, clock: Clock
) -> None:
    """A beat of the MC's previous life, still pending, must not land after its re-registration
    (the MC would look HEALTHY with stale counts)."""
    batcher = HeartbeatBatcher(store, interval_s=3600, max_pending=500)
    await batcher.start()
    try:
        gc = await start_gc(store, heartbeats=batcher)
        await gc.mcs.RegisterMC(register_mc(), metadata=keys.mc())
        clock.now = T0 + timedelta(seconds=1)
        await gc.mcs.FastHeartbeat(
            pb.FastHeartbeatRequest(controller_id="mc-1", capacity=capacity(), health=pb.HEALTHY),
            metadata=keys.mc(),
        )
        assert batcher.pending == 1
        clock.now = T0 + timedelta(seconds=2)
        await gc.mcs.RegisterMC(register_mc(max_meetings=7), metadata=keys.mc())
        assert batcher.pending == 0
        await batcher.flush()
        again = await store.get_controller("mc-1")
        assert again is not None
        assert again.health is Health.PENDING and again.current_meetings == 0
        assert again.registered_at == clock.now and again.last_heartbeat_at is None
    finally:
        await batcher.stop()


async def test_an_mc_of_another_region_is_accepted(gc: Gc, store: GcStore, keys: Keys) -> None:
    answer = await gc.mcs.RegisterMC(register_mc(region="us-east"), metadata=keys.mc())
    assert answer.accepted
    registered = await store.get_controller("mc-1")
    assert registered is not None and registered.region == "us-east"


@pytest.mark.parametrize("kind", ["fast", "comprehensive"])
async def test_heartbeat_of_an_unknown_mc_is_not_found(gc: Gc, keys: Keys, kind: str) -> None:
    before = sample("gc_heartbeats_total", type=kind, result="not_found")
    call: Awaitable[pb.HeartbeatResponse]
    if kind == "fast":
        call = gc.mcs.FastHeartbeat(
            pb.FastHeartbeatRequest(controller_id="mc-ghost", capacity=capacity()),
            metadata=keys.mc("mc-ghost"),
        )
    else:
        call = gc.mcs.ComprehensiveHeartbeat(
            pb.ComprehensiveHeartbeatRequest(controller_id="mc-ghost", capacity=capacity()),
            metadata=keys.mc("mc-ghost"),
        )
    error = await rpc_error(call)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "unknown controller mc-ghost"
    assert sample("gc_heartbeats_total", type=kind, result="not_found") == before + 1


async def test_heartbeat_without_capacity_is_invalid(gc: Gc, store: GcStore, keys: Keys) -> None:
    await gc.mcs.RegisterMC(register_mc(), metadata=keys.mc())
    before = sample("gc_heartbeats_total", type="fast", result="invalid")
    error = await rpc_error(
        gc.mcs.FastHeartbeat(
            pb.FastHeartbeatRequest(controller_id="mc-1", health=pb.HEALTHY), metadata=keys.mc()
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "capacity: required"
    assert sample("gc_heartbeats_total", type="fast", result="invalid") == before + 1
    untouched = await store.get_controller("mc-1")
    assert untouched is not None
    assert untouched.health is Health.PENDING and untouched.last_heartbeat_at is None


async def test_comprehensive_heartbeat_with_nan_cpu_is_invalid(gc: Gc, keys: Keys) -> None:
    await gc.mcs.RegisterMC(register_mc(), metadata=keys.mc())
    error = await rpc_error(
        gc.mcs.ComprehensiveHeartbeat(
            pb.ComprehensiveHeartbeatRequest(
                controller_id="mc-1", capacity=capacity(), cpu_usage_percent=float("nan")
            ),
            metadata=keys.mc(),
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("cpu_usage_percent: ")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        pytest.param({"id": "m" * 256}, "id", id="id-256-bytes"),
        pytest.param({"id": "mc/1"}, "id", id="id-slash"),
        pytest.param({"region": "r" * 51}, "region", id="region-51-bytes"),
        pytest.param({"grpc_endpoint": "ftp://x"}, "grpc_endpoint", id="grpc-ftp"),
        pytest.param({"grpc_endpoint": ""}, "grpc_endpoint", id="grpc-missing"),
        pytest.param({"webtransport_endpoint": "http://"}, "webtransport_endpoint", id="wt"),
        pytest.param({"max_meetings": 0}, "max_meetings", id="max-meetings-0"),
        pytest.param({"max_participants": 0}, "max_participants", id="max-participants-0"),
    ],
)
async def test_invalid_registration_is_refused_and_nothing_stored(
    gc: Gc, store: GcStore, keys: Keys, overrides: dict[str, Any], field: str
) -> None:
    before = sample("gc_registrations_total", kind="mc", result="invalid")
    error = await rpc_error(gc.mcs.RegisterMC(register_mc(**overrides), metadata=keys.mc()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(f"{field}: ")
    assert await store.list_controllers() == []
    assert sample("gc_registrations_total", kind="mc", result="invalid") == before + 1


# --- NotifyMeetingEnded --------------------------------------------------------------------


async def claim_active(store: GcStore, meeting_id: str, mc_id: str) -> None:
    claim = await store.claim_meeting(
        meeting_id, REGION, "gc-1", T0, stale_claim_after=timedelta(seconds=30)
    )
    assert claim.won
    await store.activate_assignment(meeting_id, REGION, "gc-1", mc_id, ["mh-1"], T0)


async def test_meeting_end_is_idempotent_and_ends_the_live_assignment(
    gc: Gc, store: GcStore, keys: Keys, clock: Clock
) -> None:
    notice = pb.NotifyMeetingEndedRequest(meeting_id="standup", region=REGION)
    # No assignment at all: acknowledged all the same.
    assert (await gc.mcs.NotifyMeetingEnded(notice, metadata=keys.mc())).acknowledged

    await gc.mcs.RegisterMC(register_mc(), metadata=keys.mc())
    await claim_active(store, "standup", "mc-1")
    clock.now = T0 + timedelta(minutes=5)
    assert (await gc.mcs.NotifyMeetingEnded(notice, metadata=keys.mc("mc-1"))).acknowledged
    assert await store.active_assignment("standup", REGION) is None
    assert (await gc.mcs.NotifyMeetingEnded(notice, metadata=keys.mc("mc-1"))).acknowledged
    # Ended, so the meeting may be claimed anew.
    again = await store.claim_meeting(
        "standup", REGION, "gc-1", clock.now, stale_claim_after=timedelta(seconds=30)
    )
    assert again.won


async def test_meeting_end_from_another_mc_is_refused_and_leaves_the_assignment(
    gc: Gc, store: GcStore, keys: Keys
) -> None:
    await gc.mcs.RegisterMC(register_mc(), metadata=keys.mc())
    await claim_active(store, "moved", "mc-1")
    notice = pb.NotifyMeetingEndedRequest(meeting_id="moved", region=REGION)
    error = await rpc_error(gc.mcs.NotifyMeetingEnded(notice, metadata=keys.mc("mc-old")))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == "caller may not act for this id"
    live = await store.active_assignment("moved", REGION)
    assert live is not None and live.mc_id == "mc-1"


async def test_meeting_end_with_a_bad_meeting_id_is_invalid(gc: Gc, keys: Keys) -> None:
    error = await rpc_error(
        gc.mcs.NotifyMeetingEnded(
            pb.NotifyMeetingEndedRequest(meeting_id="a/b", region=REGION), metadata=keys.mc()
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("meeting_id: ")


# --- media handlers ------------------------------------------------------------------------


async def test_mh_register_and_load_report(
    gc: Gc, store: GcStore, keys: Keys, clock: Clock
) -> None:
    answer = await gc.mhs.RegisterMH(register_mh(), metadata=keys.mh())
    assert answer.accepted and answer.load_report_interval_ms == 2500
    registered = await store.get_media_handler("mh-1")
    assert registered is not None
    assert registered.zone == "eu-west-1a" and registered.health is Health.PENDING

    clock.now = T0 + timedelta(seconds=3)
    report = await gc.mhs.SendLoadReport(
        pb.MHLoadReportRequest(
            handler_id="mh-1",
            current_streams=42,
            health=pb.HEALTHY,
            cpu_usage_percent=10.0,
            memory_usage_percent=20.0,
            bandwidth_usage_percent=30.0,
        ),
        metadata=keys.mh(),
    )
    assert report.acknowledged and report.timestamp == ms(clock.now)
    reported = await store.get_media_handler("mh-1")
    assert reported is not None
    assert (reported.current_streams, reported.health) == (42, Health.HEALTHY)
    assert (reported.cpu_percent, reported.memory_percent, reported.bandwidth_percent) == (
        10.0,
        20.0,
        30.0,
    )
    assert reported.last_report_at == clock.now


async def test_load_reports_written_behind_answer_at_once_and_a_registration_flushes_them(
    start_gc: StartGc, store: GcStore, keys: Keys, clock: Clock
) -> None:
    """With a `LoadReportBatcher` a report is answered before it is written; NOT_FOUND comes
    from the batcher's known ids; a report of the MH's previous life, still pending, is
    written before its re-registration resets the row (so it cannot land after it)."""
    batcher = LoadReportBatcher(store, interval_s=3600, max_pending=500)
    await batcher.start()
    try:
        gc = await start_gc(store, load_reports=batcher)
        error = await rpc_error(
            gc.mhs.SendLoadReport(
                pb.MHLoadReportRequest(handler_id="mh-ghost"), metadata=keys.mh("mh-ghost")
            )
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert error.details() == "unknown media handler mh-ghost"
        await gc.mhs.RegisterMH(register_mh(), metadata=keys.mh())
        clock.now = T0 + timedelta(seconds=1)
        answer = await gc.mhs.SendLoadReport(
            pb.MHLoadReportRequest(handler_id="mh-1", current_streams=9, health=pb.HEALTHY),
            metadata=keys.mh(),
        )
        assert answer.acknowledged and answer.timestamp == ms(clock.now)
        assert batcher.pending == 1 and batcher.last_heard.at("mh", "mh-1") == clock.now
        unwritten = await store.get_media_handler("mh-1")
        assert unwritten is not None and unwritten.last_report_at is None

        clock.now = T0 + timedelta(seconds=2)
        await gc.mhs.RegisterMH(register_mh(max_streams=7), metadata=keys.mh())
        assert batcher.pending == 0 and batcher.last_heard.at("mh", "mh-1") is None
        again = await store.get_media_handler("mh-1")
        assert again is not None
        assert (again.health, again.current_streams, again.max_streams) == (Health.PENDING, 0, 7)
        assert again.last_report_at is None
    finally:
        await batcher.stop()


async def test_mh_without_zone_is_stored_without_one(gc: Gc, store: GcStore, keys: Keys) -> None:
    await gc.mhs.RegisterMH(register_mh(zone=""), metadata=keys.mh())
    registered = await store.get_media_handler("mh-1")
    assert registered is not None and registered.zone is None


async def test_load_report_of_an_unknown_mh_is_not_found(gc: Gc, keys: Keys) -> None:
    error = await rpc_error(
        gc.mhs.SendLoadReport(
            pb.MHLoadReportRequest(handler_id="mh-ghost"), metadata=keys.mh("mh-ghost")
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "unknown media handler mh-ghost"


async def test_invalid_mh_registration_is_refused(gc: Gc, store: GcStore, keys: Keys) -> None:
    error = await rpc_error(gc.mhs.RegisterMH(register_mh(max_streams=0), metadata=keys.mh()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("max_streams: ")
    assert await store.list_media_handlers() == []


# --- authentication ------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    name: str
    metadata: Callable[[Keys], Metadata]


MC_CALLER = Caller("mc", lambda k: k.mc())
MH_CALLER = Caller("mh", lambda k: k.mh())
GC_CALLER = Caller("gc", lambda k: k.token("gc", ServiceType.GLOBAL_CONTROLLER))


async def call_both(gc: Gc, metadata: Metadata) -> list[grpc.aio.AioRpcError]:
    """RegisterMC and RegisterMH with `metadata`; both must fail. Returns their errors."""
    return [
        await rpc_error(gc.mcs.RegisterMC(register_mc(), metadata=metadata)),
        await rpc_error(gc.mhs.RegisterMH(register_mh(), metadata=metadata)),
    ]


async def test_an_mc_token_on_the_mh_registry_is_permission_denied(
    gc: Gc, store: GcStore, keys: Keys
) -> None:
    error = await rpc_error(gc.mhs.RegisterMH(register_mh(), metadata=keys.mc()))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await store.list_media_handlers() == []


async def test_an_mh_token_on_the_gc_service_is_permission_denied(
    gc: Gc, store: GcStore, keys: Keys
) -> None:
    error = await rpc_error(gc.mcs.RegisterMC(register_mc(), metadata=keys.mh()))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await store.list_controllers() == []


async def test_a_gc_token_is_permission_denied_when_gc_keys_are_trusted(
    gc: Gc, store: GcStore, keys: Keys
) -> None:
    errors = await call_both(gc, keys.token("gc", ServiceType.GLOBAL_CONTROLLER))
    assert [e.code() for e in errors] == [grpc.StatusCode.PERMISSION_DENIED] * 2
    assert await store.list_controllers() == [] and await store.list_media_handlers() == []


async def test_a_gc_token_is_unauthenticated_when_gc_keys_are_not_trusted(
    start_gc: StartGc, store: GcStore, keys: Keys
) -> None:
    gc = await start_gc(store, trust_gc_keys=False)
    errors = await call_both(gc, keys.token("gc", ServiceType.GLOBAL_CONTROLLER))
    assert [e.code() for e in errors] == [grpc.StatusCode.UNAUTHENTICATED] * 2
    assert {e.details() for e in errors} == {UNAUTHENTICATED_MESSAGE}


async def test_a_gc_token_for_mcs_is_unauthenticated(gc: Gc, keys: Keys) -> None:
    # The GC's own tokens carry scope service.write.mc: wrong scope for a GC.
    errors = await call_both(gc, keys.token("gc", ServiceType.GLOBAL_CONTROLLER, SCOPE_MC))
    assert [e.code() for e in errors] == [grpc.StatusCode.UNAUTHENTICATED] * 2


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param(lambda k: (), id="no-token"),
        pytest.param(lambda k: (("authorization", "Bearer garbage"),), id="garbage"),
        pytest.param(lambda k: k.token("mh", ServiceType.MEETING_CONTROLLER), id="mh-key-as-mc"),
        pytest.param(lambda k: k.token("mc", ServiceType.MEDIA_HANDLER), id="mc-key-as-mh"),
    ],
)
async def test_bad_tokens_are_unauthenticated(
    gc: Gc, store: GcStore, keys: Keys, metadata: Callable[[Keys], Metadata]
) -> None:
    errors = await call_both(gc, metadata(keys))
    assert [e.code() for e in errors] == [grpc.StatusCode.UNAUTHENTICATED] * 2
    assert {e.details() for e in errors} == {UNAUTHENTICATED_MESSAGE}
    assert await store.list_controllers() == [] and await store.list_media_handlers() == []


def test_the_interceptor_needs_some_key() -> None:
    with pytest.raises(ValueError, match="trusted public key"):
        auth_interceptor([], [])


# --- server faults -------------------------------------------------------------------------

SECRET = "hunter2-secret"


@pytest.fixture
async def dead_store() -> AsyncIterator[GcStore]:
    """A store whose PostgreSQL is not there: nothing listens on its port."""
    port = free_port()
    url = f"postgresql+asyncpg://gc:{SECRET}@127.0.0.1:{port}/registry"
    store = GcStore(create_engine(url))
    yield store
    await store.aclose()


async def test_a_dead_database_is_unavailable_without_leaking(
    start_gc: StartGc, dead_store: GcStore, keys: Keys
) -> None:
    gc = await start_gc(dead_store)
    before = sample("gc_registrations_total", kind="mc", result="unavailable")
    errors = [
        await rpc_error(gc.mcs.RegisterMC(register_mc(), metadata=keys.mc())),
        await rpc_error(
            gc.mcs.FastHeartbeat(
                pb.FastHeartbeatRequest(controller_id="mc-1", capacity=capacity()),
                metadata=keys.mc(),
            )
        ),
        await rpc_error(
            gc.mcs.NotifyMeetingEnded(
                pb.NotifyMeetingEndedRequest(meeting_id="m", region=REGION), metadata=keys.mc()
            )
        ),
        await rpc_error(gc.mhs.RegisterMH(register_mh(), metadata=keys.mh())),
        await rpc_error(
            gc.mhs.SendLoadReport(pb.MHLoadReportRequest(handler_id="mh-1"), metadata=keys.mh())
        ),
    ]
    assert {e.code() for e in errors} == {grpc.StatusCode.UNAVAILABLE}
    assert {e.details() for e in errors} == {UNAVAILABLE_MESSAGE}
    for error in errors:
        text = f"{error.details()} {error.debug_error_string()}"
        for leak in (SECRET, "postgresql", "127.0.0.1:" + str(dead_store.engine.url.port)):
            assert leak not in text
        for sql in ("SELECT", "INSERT", "UPDATE", "controllers"):
            assert sql not in text
    assert sample("gc_registrations_total", kind="mc", result="unavailable") == before + 1


class ExplodingStore(GcStore):
    """A real store whose registration fails with an unexpected, chatty exception."""

    async def upsert_controller(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"lost gc:{SECRET}@db while running SELECT")


async def test_an_unexpected_error_is_internal_without_detail(
    start_gc: StartGc, store: GcStore, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    gc = await start_gc(ExplodingStore(store.engine))
    with caplog.at_level(logging.INFO, logger="darktower.gc.grpc_services"):
        error = await rpc_error(gc.mcs.RegisterMC(register_mc(), metadata=keys.mc()))
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == INTERNAL_MESSAGE
    assert "RegisterMC failed: RuntimeError" in caplog.text
    assert SECRET not in caplog.text and "SELECT" not in caplog.text


@pytest.mark.parametrize(
    ("error", "code", "message", "result"),
    [
        (
            InvalidGcRequest("id", "required"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "id: required",
            "invalid",
        ),
        (
            UnknownController("mc-9"),
            grpc.StatusCode.NOT_FOUND,
            "unknown controller mc-9",
            "not_found",
        ),
        (
            UnknownMediaHandler("mh-9"),
            grpc.StatusCode.NOT_FOUND,
            "unknown media handler mh-9",
            "not_found",
        ),
        (DatabaseUnavailable("x"), grpc.StatusCode.UNAVAILABLE, UNAVAILABLE_MESSAGE, "unavailable"),
        (StoreError("SQL"), grpc.StatusCode.UNAVAILABLE, UNAVAILABLE_MESSAGE, "unavailable"),
        (GcUnavailable(), grpc.StatusCode.UNAVAILABLE, UNAVAILABLE_MESSAGE, "unavailable"),
        (NoControllerAvailable("r", "d"), grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, "error"),
        (KeyError("secret"), grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, "error"),
    ],
)
def test_status_for(error: Exception, code: grpc.StatusCode, message: str, result: str) -> None:
    assert status_for(error) == (code, message, result)
