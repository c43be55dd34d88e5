"""grpc.health.v1 and reflection on a real MC (in-process, real gRPC on loopback, real Redis):
the health check answers without a token (a Kubernetes `grpc:` probe has none), follows
readiness, turns NOT_SERVING at the first moment of a drain; nothing else passes without a
token — not the health service's Watch, not reflection, not a method name that only looks
like the check; a flood of tokenless checks costs the MC nothing it needs for assignments.
The gRPC server metrics count all of it by the served method names only."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import REGISTRY

from darktower.auth.interceptor import UNAUTHENTICATED_MESSAGE
from darktower.embedded.redis import free_port
from darktower.wire.dark_tower import internal_pb2 as pb
from tests.support.mc import RunningMc
from tests.support.metrics import sample
from tests.support.waiting import eventually

MC_SERVICE = "dark_tower.internal.MeetingControllerService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
Metadata = tuple[tuple[str, str], ...]


async def check(
    mc: RunningMc, service: str = "", metadata: Metadata | None = None
) -> health_pb2.HealthCheckResponse.ServingStatus.ValueType:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mc.app.grpc_port}") as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), metadata=metadata, timeout=5
        )
    return answer.status


async def raw_call(mc: RunningMc, method: str, metadata: Metadata | None = None) -> grpc.StatusCode:
    """Call `method` (any name) with an empty request; the status code it ends with."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mc.app.grpc_port}") as channel:
        call = channel.unary_unary(method, None, None)
        try:
            await call(b"", metadata=metadata, timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def handled(method: str, code: str, service: str = "grpc.health.v1.Health") -> float:
    return sample(
        "grpc_server_handled_total", grpc_service=service, grpc_method=method, grpc_code=code
    )


async def test_the_health_check_needs_no_token_and_ignores_a_bogus_one(mc: RunningMc) -> None:
    before = handled("Check", "OK")
    assert await check(mc) == SERVING
    assert await check(mc, MC_SERVICE) == SERVING
    bogus: Metadata = (("authorization", "Bearer not-a-token"),)
    assert await check(mc, metadata=bogus) == SERVING
    assert await check(mc, metadata=(("authorization", "Basic x"), ("authorization", "y"))) == (
        SERVING
    )
    assert handled("Check", "OK") == before + 4
    # An unknown service is NOT_FOUND, as the standard says: nothing else is revealed.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await check(mc, "dark_tower.internal.NoSuchService")
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "method",
    [
        "/dark_tower.internal.MeetingControllerService/AssignMeetingWithMh",
        "/grpc.health.v1.Health/Watch",
        "/grpc.health.v1.Health/check",
        "/grpc.health.v1.Health/Check/",
        "/grpc.health.v1.Health/CheckAll",
        "/grpc.health.v1.health/Check",
        "grpc.health.v1.Health/Check",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/no.such.Service/Method",
    ],
)
async def test_every_other_method_still_needs_a_token(mc: RunningMc, method: str) -> None:
    before = handled("unknown", "UNAUTHENTICATED", service="unknown")
    assert await raw_call(mc, method) == grpc.StatusCode.UNAUTHENTICATED
    bogus: Metadata = (("authorization", "Bearer not-a-token"),)
    assert await raw_call(mc, method, bogus) == grpc.StatusCode.UNAUTHENTICATED
    if method.startswith("/dark_tower.") or method.endswith("/Watch"):
        return
    # Names the server does not serve are counted under one label: no series per name. The
    # server counts a call after its answer is on its way: wait for the second count to land.
    await eventually(
        lambda: handled("unknown", "UNAUTHENTICATED", service="unknown") >= before + 2,
        timeout=5,
        what="both refusals counted",
    )
    assert handled("unknown", "UNAUTHENTICATED", service="unknown") == before + 2
    assert method_labels() <= SERVED_METHODS | {"unknown"}


SERVED_METHODS = {
    method.name
    for descriptor in (pb.DESCRIPTOR, health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR)
    for service in descriptor.services_by_name.values()
    for method in service.methods
}


def method_labels() -> set[str]:
    """Every `grpc_method` label value this process's gRPC server metrics hold."""
    return {
        found.labels["grpc_method"]
        for family in REGISTRY.collect()
        if family.name.startswith("grpc_server_")
        for found in family.samples
        if "grpc_method" in found.labels
    }


async def test_watch_with_a_token_follows_the_status(mc: RunningMc) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mc.app.grpc_port}") as channel:
        stream = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=MC_SERVICE), metadata=mc.metadata, timeout=10
        )
        first = await stream.read()
        assert first.status == SERVING
        await mc.app.grpc_health.shutdown()
        second = await stream.read()
        assert second.status == NOT_SERVING
        stream.cancel()


async def test_not_serving_while_the_mc_is_not_registered(
    start_mc: Callable[..., Awaitable[RunningMc]], key_dir: Path
) -> None:
    # A GC that is not there: the MC keeps trying to register and is not ready meanwhile.
    mc = await start_mc(
        gc_endpoint=f"http://127.0.0.1:{free_port()}", service_key_file=key_dir / "mc.key"
    )
    assert await check(mc) == NOT_SERVING
    assert await check(mc, MC_SERVICE) == NOT_SERVING


async def test_not_serving_from_the_first_moment_of_a_drain(mc: RunningMc) -> None:
    assert (await mc.assign("health-drain")).accepted
    assert await check(mc) == SERVING
    # The hosted meeting keeps the drain (and the gRPC server) going for a while.
    drain = asyncio.create_task(mc.app.drain(deadline_seconds=4))
    try:
        await eventually(lambda: mc.app.controller.draining, timeout=5, what="the MC draining")
        assert await check(mc) == NOT_SERVING
        assert await check(mc, MC_SERVICE) == NOT_SERVING
        refused = await mc.assign("health-too-late")
        assert refused.rejection_reason == pb.REJECTION_REASON_DRAINING
        # Later refreshes never bring it back while draining.
        await asyncio.sleep(1.5)
        assert await check(mc) == NOT_SERVING
    finally:
        await drain


async def test_a_flood_of_tokenless_checks_leaves_assignments_working(mc: RunningMc) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mc.app.grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answers = await asyncio.gather(
            *(stub.Check(health_pb2.HealthCheckRequest(), timeout=20) for _ in range(500)),
            return_exceptions=True,
        )
    # Each check is answered SERVING, or refused by the server's cap of 256 concurrent RPCs
    # when too many are in flight at once (on a busy machine); nothing else.
    refused = [a for a in answers if isinstance(a, BaseException)]
    assert all(
        isinstance(a, grpc.aio.AioRpcError) and a.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        for a in refused
    ), refused[:3]
    statuses = {a.status for a in answers if not isinstance(a, BaseException)}
    assert statuses == {SERVING}
    assert (await mc.assign("after-the-flood")).accepted


async def reflected_services(mc: RunningMc, metadata: Metadata | None) -> list[str]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mc.app.grpc_port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
            metadata=metadata,
            timeout=5,
        )
        async for answer in call:
            return sorted(s.name for s in answer.list_services_response.service)
    return []


async def test_reflection_is_off_by_default(mc: RunningMc) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await reflected_services(mc, mc.metadata)
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_reflection_when_on_lists_the_services_to_a_token_holder_only(
    start_mc: Callable[..., Awaitable[RunningMc]],
) -> None:
    mc = await start_mc(grpc_reflection=True)
    assert await reflected_services(mc, mc.metadata) == [
        MC_SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await reflected_services(mc, None)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert refused.value.details() == UNAUTHENTICATED_MESSAGE


async def test_assignments_are_counted_by_method_and_code(mc: RunningMc) -> None:
    before_ok = handled("AssignMeetingWithMh", "OK", service=MC_SERVICE)
    before_unauth = handled("AssignMeetingWithMh", "UNAUTHENTICATED", service=MC_SERVICE)
    assert (await mc.assign("counted")).accepted
    method = f"/{MC_SERVICE}/AssignMeetingWithMh"
    assert await raw_call(mc, method) == grpc.StatusCode.UNAUTHENTICATED
    assert handled("AssignMeetingWithMh", "OK", service=MC_SERVICE) == before_ok + 1
    assert (
        handled("AssignMeetingWithMh", "UNAUTHENTICATED", service=MC_SERVICE) == before_unauth + 1
    )
    assert (
        sample(
            "grpc_server_handling_seconds_count",
            grpc_service=MC_SERVICE,
            grpc_method="AssignMeetingWithMh",
        )
        >= 2
    )
