"""grpc.health.v1 and the request metrics on a real GC (in-process, real gRPC and HTTP servers on
loopback, a real database): the health check answers without a token, follows readiness (a
crashed background task makes it NOT_SERVING) and is NOT_SERVING for good once the GC stops;
the registry services still refuse tokenless calls; gRPC and HTTP requests are counted by
method/route template and code, never by a name a client made up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from darktower.auth.keys import generate_key_files
from darktower.embedded.redis import free_port
from darktower.gc.server import GcApp
from darktower.gc.settings import GcSettings
from tests.support.injection import fail_once
from tests.support.metrics import metric, sample
from tests.support.waiting import eventually

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
GC_SERVICES = (
    "dark_tower.internal.GlobalControllerService",
    "dark_tower.internal.MediaHandlerRegistryService",
)


@pytest.fixture
async def gc(tmp_path: Path, database_url: str) -> AsyncIterator[GcApp]:
    generate_key_files(tmp_path)
    app = GcApp(
        GcSettings(
            id="gc-health",
            grpc_bind=f"127.0.0.1:{free_port()}",
            http_bind="127.0.0.1:0",
            database_url=database_url,
            service_key_file=tmp_path / "gc.key",
            trusted_mc_key_files=[tmp_path / "mc.pub"],
            trusted_mh_key_files=[tmp_path / "mh.pub"],
            sweep_interval_seconds=0.1,
            staleness_seconds=60,
        )
    )
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def check(gc: GcApp, service: str = "") -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gc.grpc_port}") as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service),
            metadata=(("authorization", "Bearer forged"),),
            timeout=5,
        )
    return int(answer.status)


async def test_tokenless_checks_follow_readiness_and_stop(
    gc: GcApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    for service in ("", *GC_SERVICES):
        assert await check(gc, service) == SERVING
    # A crashed background task makes the GC not ready: the health check follows within its
    # refresh interval, as /health/ready does at once.
    assert gc.sweeper is not None
    monkeypatch.setattr(gc.sweeper, "sweep_once", fail_once(gc.sweeper.sweep_once))
    await eventually(lambda: bool(gc.tasks.failed), timeout=20, what="the sweeper crashed")

    async def not_serving() -> bool:
        return bool(await check(gc) == NOT_SERVING)

    await eventually(not_serving, timeout=10, what="NOT_SERVING")


async def test_not_serving_for_good_once_stopping(gc: GcApp) -> None:
    assert gc.grpc_health is not None
    assert await check(gc) == SERVING
    await gc.grpc_health.shutdown()  # the first step of `stop()`
    assert await check(gc) == NOT_SERVING
    assert not await gc.grpc_health.refresh()
    for service in ("", *GC_SERVICES):
        assert await check(gc, service) == NOT_SERVING


async def test_registry_services_still_need_a_token(gc: GcApp) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gc.grpc_port}") as channel:
        for method in (
            "/dark_tower.internal.GlobalControllerService/RegisterMC",
            "/dark_tower.internal.MediaHandlerRegistryService/RegisterMH",
            "/grpc.health.v1.Health/Watch",
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await channel.unary_unary(method, None, None)(b"", timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, method
    assert (
        sample(
            "grpc_server_handled_total",
            grpc_service=GC_SERVICES[0],
            grpc_method="RegisterMC",
            grpc_code="UNAUTHENTICATED",
        )
        >= 1
    )


async def test_http_requests_are_counted_by_route_template(gc: GcApp) -> None:
    def count(method: str, route: str, code: str) -> float:
        return sample("gc_http_requests_total", method=method, route=route, code=code)

    join = "/v1/meetings/{meeting_id}/join"
    before_join = count("POST", join, "401")
    before_unmatched = count("GET", "unmatched", "404")
    before_other = count("other", "unmatched", "404")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gc.http_port}", timeout=5) as http:
        for meeting in ("m-1", "m-2", "m-3"):
            assert (await http.post(f"/v1/meetings/{meeting}/join")).status_code == 401
        for path in ("/no/such/path-1", "/no/such/path-2"):
            assert (await http.get(path)).status_code == 404
        assert (await http.request("BREW", "/coffee")).status_code in (404, 405)
        exposition = (await http.get("/metrics")).text
        openmetrics = await http.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
    assert count("POST", join, "401") == before_join + 3
    assert count("GET", "unmatched", "404") == before_unmatched + 2
    assert count("other", "unmatched", "404") + count("other", "unmatched", "405") >= (
        before_other + 1
    )
    # Only templates: no series names a path or method a client sent.
    assert "m-1" not in exposition and "path-1" not in exposition and "BREW" not in exposition
    assert (
        metric(
            exposition, "gc_http_requests_total", method="GET", route="/health/ready", code="200"
        )
        is not None
    )
    # No `_created` twin of any family; OpenMetrics when asked for it.
    assert "_created" not in exposition
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")
