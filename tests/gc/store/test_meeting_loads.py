"""Participants per meeting: migration 0002, the store, validation, the gRPC edge with a real
MC GcLink, and the read API (`GET /v1/meetings`, `GET /v1/meetings/{id}`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from alembic import command
from sqlalchemy import Connection, event, inspect, text

from darktower.auth.api_keys import ApiKeyRing
from darktower.auth.client import ServiceTokenProvider
from darktower.auth.keys import generate_key_files, load_private_key
from darktower.auth.tokens import SERVICE_PROFILES
from darktower.common.limits import MAX_MEETING_LOADS
from darktower.gc.access import GcAccess
from darktower.gc.domain import AssignmentState, Health, Heartbeat
from darktower.gc.errors import InvalidGcRequest
from darktower.gc.grpc_services import add_gc_services
from darktower.gc.http import create_app
from darktower.gc.join import JoinTokenIssuer, PlacementService
from darktower.gc.mc_client import McClient
from darktower.gc.migrations import HEAD, alembic_config
from darktower.gc.store import GcStore, create_engine
from darktower.gc.store.models import AssignmentRow, ControllerRow
from darktower.gc.validation import validate_comprehensive_heartbeat
from darktower.mc.controller import Capacity
from darktower.mc.gc_client import GcClient
from darktower.mc.gc_link import GcLink, Registration
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

pytestmark = pytest.mark.timeout(30)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
REGION = "eu"
BEAT = {"current_meetings": 1, "current_participants": 1, "max_meetings": 10}


# --- migration 0002 ------------------------------------------------------------------------


def _upgrade_to(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _downgrade_to(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


def _columns(connection: Connection) -> dict[str, dict[str, object]]:
    return {c["name"]: dict(c) for c in inspect(connection).get_columns("meeting_assignments")}


async def test_migration_0002_adds_participants_with_0_for_existing_rows(
    database_url: str,
) -> None:
    assert HEAD == "0002"
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_to, "0001")
            assert "participants" not in await connection.run_sync(_columns)
            await connection.execute(
                text(
                    "INSERT INTO controllers (id, region, grpc_endpoint, max_meetings,"
                    " max_participants, current_meetings, current_participants, health,"
                    " registered_at, assignments_since_heartbeat) VALUES ('mc-1', 'eu',"
                    " 'http://mc-1:1', 10, 100, 0, 0, 'healthy', :t, 0)"
                ),
                {"t": T0.replace(tzinfo=None)},
            )
            await connection.execute(
                text(
                    "INSERT INTO meeting_assignments (meeting_id, region, mc_id, mh_ids, state,"
                    " claimed_by, claimed_at, assigned_at) VALUES ('old-1', 'eu', 'mc-1',"
                    " '[]', 'active', 'gc-0', :t, :t)"
                ),
                {"t": T0.replace(tzinfo=None)},
            )
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_to, "head")
            column = (await connection.run_sync(_columns))["participants"]
            assert column["nullable"] is False
            value = await connection.scalar(
                text("SELECT participants FROM meeting_assignments WHERE meeting_id = 'old-1'")
            )
            assert value == 0
        async with engine.begin() as connection:
            await connection.run_sync(_downgrade_to, "0001")
            assert "participants" not in await connection.run_sync(_columns)
            await connection.run_sync(_upgrade_to, "head")
    finally:
        await engine.dispose()
    # The store reads the old row with its new column.
    store = await GcStore.open(database_url)
    try:
        live = await store.active_assignment("old-1", "eu")
        assert live is not None and live.participants == 0
    finally:
        await store.aclose()


# --- the store -----------------------------------------------------------------------------


async def _place(store: GcStore, meeting_id: str, mc_id: str) -> None:
    claim = await store.claim_meeting(
        meeting_id, REGION, "gc-1", T0, stale_claim_after=timedelta(seconds=30)
    )
    assert claim.won
    await store.activate_assignment(meeting_id, REGION, "gc-1", mc_id, ["mh-1"], T0)


async def _participants(store: GcStore, meeting_id: str) -> int:
    live = await store.active_assignment(meeting_id, REGION)
    assert live is not None
    return live.participants


async def _beat(store: GcStore, mc_id: str, loads: dict[str, int] | None) -> None:
    await store.record_heartbeat(
        Heartbeat(
            mc_id,
            **BEAT,
            max_participants=1000,
            health=Health.HEALTHY,
            meeting_loads=loads,
            at=T0 + timedelta(seconds=1),
        )
    )


@pytest.fixture
async def two_mcs(store: GcStore) -> GcStore:
    for mc_id in ("mc-1", "mc-2"):
        await store.upsert_controller(mc_id, REGION, f"http://{mc_id}:1", None, 10, 1000, T0)
    for meeting_id, mc_id in (("a", "mc-1"), ("b", "mc-1"), ("c", "mc-2")):
        await _place(store, meeting_id, mc_id)
    return store


async def test_loads_update_only_the_reporting_mcs_live_meetings(two_mcs: GcStore) -> None:
    store = two_mcs
    # mc-1 claims counts for c (on mc-2) and x (nowhere): neither is written.
    await _beat(store, "mc-1", {"a": 5, "b": 2, "c": 7, "x": 3})
    assert [await _participants(store, m) for m in "abc"] == [5, 2, 0]
    assert await store.active_assignment("x", REGION) is None

    await _beat(store, "mc-2", {"c": 4})
    assert [await _participants(store, m) for m in "abc"] == [5, 2, 4]

    # A meeting the MC no longer lists has no participants there.
    await _beat(store, "mc-1", {"a": 6})
    assert [await _participants(store, m) for m in "abc"] == [6, 0, 4]


async def test_a_batch_of_beats_updates_each_mcs_meetings_from_its_own_list(
    two_mcs: GcStore,
) -> None:
    store = two_mcs

    def beat(mc_id: str, loads: dict[str, int] | None) -> Heartbeat:
        return Heartbeat(
            mc_id, **BEAT, max_participants=1000, health=Health.HEALTHY, meeting_loads=loads, at=T0
        )

    # One flush (one SELECT for both MCs): mc-1 names c (on mc-2) too, mc-2 names a.
    await store.record_heartbeats([beat("mc-1", {"a": 5, "c": 7}), beat("mc-2", {"a": 9, "c": 4})])
    assert [await _participants(store, m) for m in "abc"] == [5, 0, 4]

    # A fast beat in the batch leaves its MC's counts alone.
    await store.record_heartbeats([beat("mc-1", None), beat("mc-2", {})])
    assert [await _participants(store, m) for m in "abc"] == [5, 0, 0]


async def test_a_flush_of_mixed_beats_is_one_write_statement_on_postgresql(
    two_mcs: GcStore,
) -> None:
    """Fast and comprehensive beats, an MC that is not registered, loads and an empty list, in
    two flushes: each flush is one statement on PostgreSQL (beats and loads as arrays)."""
    store = two_mcs
    writes: list[str] = []

    def written(_c: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in {"UPDATE", "WITH", "INSERT"}:
            writes.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", written)

    def beat(mc_id: str, cpu: float | None, loads: dict[str, int] | None) -> Heartbeat:
        return Heartbeat(
            mc_id,
            **BEAT,
            max_participants=1000,
            health=Health.HEALTHY,
            cpu_percent=cpu,
            memory_percent=None if cpu is None else cpu + 1,
            meeting_loads=loads,
            at=T0 + timedelta(seconds=5),
        )

    await store.record_heartbeats(
        [beat("mc-1", 40.0, {"a": 5, "b": 2}), beat("mc-2", None, None), beat("ghost", 1.0, {})]
    )
    await store.record_heartbeats([beat("mc-1", None, None), beat("mc-2", 10.0, {})])
    if store.engine.dialect.name == "postgresql":
        assert len(writes) == 2
    else:
        assert len(writes) >= 3
    mc_1, mc_2 = await store.get_controller("mc-1"), await store.get_controller("mc-2")
    assert mc_1 is not None and (mc_1.cpu_percent, mc_1.memory_percent) == (40.0, 41.0)
    assert mc_2 is not None and (mc_2.cpu_percent, mc_2.memory_percent) == (10.0, 11.0)
    assert mc_1.last_heartbeat_at == T0 + timedelta(seconds=5) and mc_1.current_meetings == 1
    assert await store.get_controller("ghost") is None
    assert [await _participants(store, m) for m in "abc"] == [5, 2, 0]


def test_the_flush_statement_names_the_models_tables_and_state() -> None:
    """The PostgreSQL flush is written out as SQL: its names are the models'."""
    assert ControllerRow.__tablename__ == "controllers"
    assert AssignmentRow.__tablename__ == "meeting_assignments"
    assert AssignmentState.ACTIVE.value == "active"


async def test_a_fast_beat_keeps_the_counts_and_an_ended_row_is_never_touched(
    two_mcs: GcStore,
) -> None:
    store = two_mcs
    await _beat(store, "mc-1", {"a": 5, "b": 2})
    await _beat(store, "mc-1", None)
    assert [await _participants(store, m) for m in "ab"] == [5, 2]

    assert await store.end_assignment("b", REGION, T0 + timedelta(seconds=2))
    await _beat(store, "mc-1", {"a": 1, "b": 9})
    async with store.engine.connect() as connection:
        ended = await connection.scalar(
            text("SELECT participants FROM meeting_assignments WHERE meeting_id = 'b'")
        )
    assert ended == 2
    assert await _participants(store, "a") == 1


async def test_listing_is_by_participants_then_id_bounded_with_a_total(
    two_mcs: GcStore,
) -> None:
    store = two_mcs
    await store.claim_meeting("pending", REGION, "gc-1", T0, stale_claim_after=timedelta(1))
    await _beat(store, "mc-1", {"a": 3, "b": 3})
    await _beat(store, "mc-2", {"c": 9})
    rows, total = await store.list_live_meetings(REGION, limit=2)
    assert total == 3  # the claimed (not yet placed) meeting is not listed
    assert [(r.meeting_id, r.mc_id, r.participants) for r in rows] == [
        ("c", "mc-2", 9),
        ("a", "mc-1", 3),
    ]
    assert (await store.list_live_meetings("elsewhere", limit=10)) == ([], 0)


# --- validation ----------------------------------------------------------------------------


def _comprehensive(loads: list[tuple[str, int]]) -> pb.ComprehensiveHeartbeatRequest:
    return pb.ComprehensiveHeartbeatRequest(
        controller_id="mc-1",
        capacity=pb.ControllerCapacity(
            max_meetings=10, current_meetings=1, max_participants=100, current_participants=1
        ),
        health=pb.HEALTHY,
        meetings=[pb.MeetingLoad(meeting_id=m, participants=n) for m, n in loads],
    )


def test_loads_are_validated_into_a_mapping() -> None:
    beat = validate_comprehensive_heartbeat(_comprehensive([("a", 2), ("b-_9", 0)]))
    assert beat.meeting_loads == {"a": 2, "b-_9": 0}
    assert validate_comprehensive_heartbeat(_comprehensive([])).meeting_loads == {}
    many = [(f"m{i}", 1) for i in range(MAX_MEETING_LOADS)]
    assert len(validate_comprehensive_heartbeat(_comprehensive(many)).meeting_loads or {}) == (
        MAX_MEETING_LOADS
    )


@pytest.mark.parametrize(
    ("loads", "field"),
    [
        ([(f"m{i}", 1) for i in range(MAX_MEETING_LOADS + 1)], "meetings"),
        ([("ok", 1), ("", 1)], "meetings[1].meeting_id"),
        ([("a b", 1)], "meetings[0].meeting_id"),
        ([("x" * 256, 1)], "meetings[0].meeting_id"),
        ([("a", 1), ("a", 2)], "meetings[1].meeting_id"),
        ([("a", 2**31)], "meetings[0].participants"),
    ],
)
def test_bad_loads_are_refused_naming_the_entry(loads: list[tuple[str, int]], field: str) -> None:
    with pytest.raises(InvalidGcRequest) as caught:
        validate_comprehensive_heartbeat(_comprehensive(loads))
    assert caught.value.field == field


# --- gRPC: a real MC GcLink against the GC's servicer --------------------------------------


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    generate_key_files(tmp_path / "keys")
    return tmp_path / "keys"


@pytest.fixture
async def gc_grpc(store: GcStore) -> AsyncIterator[str]:
    server = grpc.aio.server()
    add_gc_services(
        server,
        store,
        region=REGION,
        fast_heartbeat_ms=100,
        comprehensive_heartbeat_ms=100,
        load_report_ms=1000,
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


def token_provider(keys: Path, service: str) -> ServiceTokenProvider:
    service_type, scope = SERVICE_PROFILES[service]
    return ServiceTokenProvider(
        load_private_key(keys / f"{service}.key"),
        service_type=service_type,
        scope=scope,
        issuer=f"{service}-1",
    )


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{check.__name__}: not true within {timeout}s")
        await asyncio.sleep(0.05)


async def test_a_linked_mc_reports_its_meetings_and_the_gc_stores_them(
    store: GcStore, gc_grpc: str, keys: Path
) -> None:
    loads: list[tuple[str, int]] = []
    link = GcLink(
        GcClient(gc_grpc, token_provider(keys, "mc")),
        Registration("mc-1", REGION, "http://127.0.0.1:1", "http://127.0.0.1:2", 10, 1000),
        capacity=lambda: Capacity(10, len(loads), 1000, sum(n for _, n in loads), False),
        health=lambda: pb.HEALTHY,
        meeting_loads=lambda: list(loads),
    )
    link.start()
    try:

        async def registered() -> bool:
            return await store.get_controller("mc-1") is not None

        await _eventually(registered)
        await _place(store, "standup", "mc-1")
        loads.append(("standup", 4))

        async def counted() -> bool:
            return await _participants(store, "standup") == 4

        await _eventually(counted)
        loads[0] = ("standup", 1)

        async def recounted() -> bool:
            return await _participants(store, "standup") == 1

        await _eventually(recounted)
    finally:
        await link.stop()


async def test_too_many_loads_are_invalid_argument_naming_the_field(
    store: GcStore, gc_grpc: str
) -> None:
    await store.upsert_controller("mc-1", REGION, "http://mc-1:1", None, 10, 1000, T0)
    request = _comprehensive([(f"m{i}", 1) for i in range(MAX_MEETING_LOADS + 1)])
    async with grpc.aio.insecure_channel(gc_grpc.removeprefix("http://")) as channel:
        stub = pb_grpc.GlobalControllerServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ComprehensiveHeartbeat(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith("meetings:")


# --- the read API --------------------------------------------------------------------------


@pytest.fixture
async def api(two_mcs: GcStore, keys: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = two_mcs
    issuer = JoinTokenIssuer(load_private_key(keys / "gc.key"), issuer="gc-1")
    mc_client = McClient(token_provider(keys, "gc"), gc_id="gc-1")
    placement = PlacementService(
        store, mc_client, join_tokens=issuer, gc_id="gc-1", region=REGION, staleness_s=30
    )

    async def ready() -> tuple[bool, str]:
        return True, ""

    app = create_app(
        store,
        placement,
        region=REGION,
        is_ready=ready,
        access=GcAccess(ApiKeyRing(), allow_guests=True),
    )
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gc.test") as client:
            yield client
    finally:
        await mc_client.aclose()


async def test_the_read_api_shows_participants_per_meeting(
    api: httpx.AsyncClient, two_mcs: GcStore
) -> None:
    await _beat(two_mcs, "mc-1", {"a": 2, "b": 12})
    answer = (await api.get("/v1/meetings")).json()
    assert answer["total"] == 3
    assert [(m["meeting_id"], m["mc_id"], m["participants"]) for m in answer["meetings"]] == [
        ("b", "mc-1", 12),
        ("a", "mc-1", 2),
        ("c", "mc-2", 0),
    ]
    top = (await api.get("/v1/meetings", params={"limit": 1})).json()
    assert top["total"] == 3 and [m["meeting_id"] for m in top["meetings"]] == ["b"]
    one = (await api.get("/v1/meetings/b")).json()
    assert one["participants"] == 12 and one["mc_id"] == "mc-1"


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "many"])
async def test_a_bad_limit_is_400_naming_it(api: httpx.AsyncClient, limit: str) -> None:
    response = await api.get("/v1/meetings", params={"limit": limit})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_argument"
    assert response.json()["reason"] == "limit"
    assert response.json()["message"].startswith("limit: ")
