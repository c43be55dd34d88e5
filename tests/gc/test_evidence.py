"""The GC's own check of an MC a client says it cannot reach (`darktower.gc.join.evidence`), on
real gRPC servers on loopback and the real store: a burst of claims costs one check per MC, a
live MC (even one answering with an error) stays, a silent or absent one is down and marked
UNHEALTHY once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from darktower.auth.client import ServiceTokenProvider
from darktower.auth.keys import generate_key_files, load_private_key
from darktower.auth.tokens import SCOPE_MC, ServiceType
from darktower.embedded.redis import free_port
from darktower.gc.domain import Health, Heartbeat
from darktower.gc.join.evidence import EvidenceChecks, McProbe
from darktower.gc.store import GcStore
from darktower.wire.dark_tower import internal_pb2 as pb
from tests.support.waiting import eventually

T0 = datetime(2030, 1, 1, tzinfo=UTC)
REGION = "eu"


class LegacyMc:
    """An MC's gRPC server as the probe sees it: the legacy `SendHeartbeat`, counted; it may
    answer late (`delay_s`) or with an error status (`abort_with`)."""

    def __init__(self, *, delay_s: float = 0.0, abort_with: grpc.StatusCode | None = None) -> None:
        self.calls = 0
        self.tokens: list[str] = []
        self._delay = delay_s
        self._abort_with = abort_with

    async def SendHeartbeat(
        self, request: pb.Heartbeat, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.HeartbeatResponse:
        self.calls += 1
        self.tokens.append(dict(context.invocation_metadata() or ()).get("authorization", ""))
        if self._delay:
            await asyncio.sleep(self._delay)
        if self._abort_with is not None:
            await context.abort(self._abort_with, "refused")
        return pb.HeartbeatResponse(acknowledged=False)


Serve = Callable[[LegacyMc], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[grpc.aio.Server] = []

    async def start(servicer: LegacyMc) -> str:
        server = grpc.aio.server()
        # Only the one method the probe calls, under the MC service's real name.
        handler = grpc.unary_unary_rpc_method_handler(
            servicer.SendHeartbeat,
            request_deserializer=pb.Heartbeat.FromString,
            response_serializer=pb.HeartbeatResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    "dark_tower.internal.MeetingControllerService", {"SendHeartbeat": handler}
                )
            ]
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        return f"http://127.0.0.1:{port}"

    yield start
    for server in servers:
        await server.stop(None)


@pytest.fixture
def probe(tmp_path: Path) -> McProbe:
    generate_key_files(tmp_path / "keys")
    key = load_private_key(tmp_path / "keys" / "gc.key")

    def tokens_for(mc_id: str) -> ServiceTokenProvider:
        return ServiceTokenProvider(
            key,
            service_type=ServiceType.GLOBAL_CONTROLLER,
            scope=SCOPE_MC,
            issuer="gc-1",
            audience=mc_id,
        )

    return McProbe(tokens_for, gc_id="gc-1", timeout=0.5)


class Marks:
    """The `mark` of the checks: the real store's, counted."""

    def __init__(self, store: GcStore) -> None:
        self.store = store
        self.calls: list[str] = []

    async def __call__(self, mc_id: str) -> bool:
        self.calls.append(mc_id)
        return await self.store.mark_controller_unhealthy(mc_id)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def registered(store: GcStore, mc_id: str) -> None:
    await store.upsert_controller(mc_id, REGION, "http://x:1", None, 10, 100, T0)
    await store.record_heartbeat(
        Heartbeat(
            mc_id,
            current_meetings=0,
            current_participants=0,
            max_meetings=10,
            max_participants=100,
            health=Health.HEALTHY,
            at=T0,
        )
    )


async def health(store: GcStore, mc_id: str) -> Health:
    mc = await store.get_controller(mc_id)
    assert mc is not None
    return mc.health


async def test_100_concurrent_claims_about_a_live_mc_cost_one_check_and_move_nothing(
    serve: Serve, probe: McProbe, store: GcStore
) -> None:
    await registered(store, "mc-1")
    mc = LegacyMc(delay_s=0.2)  # answers, a little late: every claim arrives during the check
    endpoint = await serve(mc)
    marks, clock = Marks(store), Clock()
    checks = EvidenceChecks(probe, marks, cache_s=2.0, clock=clock)

    answers = await asyncio.gather(*(checks.is_down("mc-1", endpoint) for _ in range(100)))
    assert answers == [False] * 100
    assert mc.calls == 1 and marks.calls == []
    assert mc.tokens[0].startswith("Bearer ")  # authenticated, as every call into an MC
    # More claims within the cache period: no check at all; after it, one more.
    assert not await checks.is_down("mc-1", endpoint)
    assert mc.calls == 1
    clock.now += 2.5
    await asyncio.gather(*(checks.is_down("mc-1", endpoint) for _ in range(20)))
    assert mc.calls == 2
    assert await health(store, "mc-1") is Health.HEALTHY


async def test_an_mc_answering_with_an_error_is_alive(
    serve: Serve, probe: McProbe, store: GcStore
) -> None:
    await registered(store, "mc-1")
    endpoint = await serve(LegacyMc(abort_with=grpc.StatusCode.PERMISSION_DENIED))
    checks = EvidenceChecks(probe, Marks(store))
    assert not await checks.is_down("mc-1", endpoint)
    assert await health(store, "mc-1") is Health.HEALTHY


async def test_an_absent_mc_is_down_and_marked_once(probe: McProbe, store: GcStore) -> None:
    await registered(store, "mc-1")
    await registered(store, "mc-2")
    marks = Marks(store)
    checks = EvidenceChecks(probe, marks)
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    answers = await asyncio.gather(*(checks.is_down("mc-1", nobody) for _ in range(50)))
    assert answers == [True] * 50
    assert marks.calls == ["mc-1"]
    assert await health(store, "mc-1") is Health.UNHEALTHY
    assert await health(store, "mc-2") is Health.HEALTHY  # only the one checked


async def test_an_mc_that_does_not_answer_in_time_is_down(
    serve: Serve, probe: McProbe, store: GcStore
) -> None:
    await registered(store, "mc-1")
    endpoint = await serve(LegacyMc(delay_s=5.0))  # the probe gives up after 0.5 s
    marks = Marks(store)
    assert await EvidenceChecks(probe, marks).is_down("mc-1", endpoint)
    assert marks.calls == ["mc-1"]


async def test_a_waiter_that_gives_up_does_not_cancel_the_check(
    serve: Serve, probe: McProbe, store: GcStore
) -> None:
    await registered(store, "mc-1")
    mc = LegacyMc(delay_s=0.3)
    endpoint = await serve(mc)
    checks = EvidenceChecks(probe, Marks(store))
    impatient = asyncio.ensure_future(checks.is_down("mc-1", endpoint))
    patient = asyncio.ensure_future(checks.is_down("mc-1", endpoint))
    await eventually(lambda: mc.calls == 1, timeout=10, what="the check under way")
    impatient.cancel()
    assert await patient is False
    assert mc.calls == 1


async def test_the_mark_is_undone_by_a_live_mcs_next_heartbeat(store: GcStore) -> None:
    await registered(store, "mc-1")
    assert await store.mark_controller_unhealthy("mc-1") is True
    assert await store.mark_controller_unhealthy("mc-1") is False  # already
    assert await store.mark_controller_unhealthy("mc-unknown") is False
    await store.record_heartbeat(
        Heartbeat(
            "mc-1",
            current_meetings=0,
            current_participants=0,
            max_meetings=10,
            max_participants=100,
            health=Health.HEALTHY,
            at=T0 + timedelta(seconds=1),
        )
    )
    assert await health(store, "mc-1") is Health.HEALTHY
