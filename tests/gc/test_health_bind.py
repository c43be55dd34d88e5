"""GC_HEALTH_BIND (README "Access model"): probes and Prometheus carry no token, so an operator
may serve `/health/*` and `/metrics` on an internal address only. On a real GC (in-process,
real HTTP servers on loopback, a real database): with it set, the public address answers them
404 and the health address answers nothing else; without it both are on GC_HTTP_BIND."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from darktower.auth.keys import generate_key_files
from darktower.embedded.redis import free_port
from darktower.gc.server import GcApp
from darktower.gc.settings import GcSettings

OPS = ["/health/live", "/health/ready", "/metrics"]


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Callable[..., GcSettings]:
    generate_key_files(tmp_path)

    def make(**overrides: Any) -> GcSettings:
        values: dict[str, Any] = {
            "id": "gc-ops",
            "grpc_bind": f"127.0.0.1:{free_port()}",
            "http_bind": "127.0.0.1:0",
            "database_url": database_url,
            "service_key_file": tmp_path / "gc.key",
            "trusted_mc_key_files": [tmp_path / "mc.pub"],
            "trusted_mh_key_files": [tmp_path / "mh.pub"],
        }
        return GcSettings(**(values | overrides))

    return make


@pytest.fixture
async def start(settings: Callable[..., GcSettings]) -> AsyncIterator[Callable[..., Any]]:
    started: list[GcApp] = []

    async def run(**overrides: Any) -> GcApp:
        app = GcApp(settings(**overrides))
        started.append(app)
        await app.start()
        return app

    try:
        yield run
    finally:
        for app in started:
            await app.stop()


async def statuses(port: int, paths: list[str]) -> dict[str, int]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        return {path: (await client.get(path)).status_code for path in paths}


async def test_with_a_health_bind_health_and_metrics_leave_the_public_address(
    start: Callable[..., Any],
) -> None:
    gc: GcApp = await start(health_bind="127.0.0.1:0")
    assert gc.health_port not in (0, gc.http_port)
    public = await statuses(gc.http_port, [*OPS, "/v1/controllers", "/openapi.json", "/join"])
    assert public == {
        "/health/live": 404,
        "/health/ready": 404,
        "/metrics": 404,
        "/v1/controllers": 401,  # the API is still there, behind its access token
        "/openapi.json": 200,
        "/join": 200,
    }
    internal = await statuses(gc.health_port, [*OPS, "/v1/controllers", "/openapi.json", "/"])
    assert internal == {
        "/health/live": 200,
        "/health/ready": 200,
        "/metrics": 200,
        "/v1/controllers": 404,
        "/openapi.json": 404,
        "/": 404,
    }
    async with httpx.AsyncClient(timeout=10) as client:
        metrics = await client.get(f"http://127.0.0.1:{gc.health_port}/metrics")
        # The same registry as before: the API's requests are counted there.
        assert 'gc_http_requests_total{code="401",method="GET",route="/v1/controllers"}' in (
            metrics.text
        )
        # Under the same body cap as every GC route.
        big = await client.post(
            f"http://127.0.0.1:{gc.health_port}/metrics", content=b"x" * (65536 + 1)
        )
        assert big.status_code == 413
    openapi = await statuses(gc.http_port, ["/openapi.json"])
    assert openapi == {"/openapi.json": 200}


async def test_without_one_they_stay_on_the_http_address(start: Callable[..., Any]) -> None:
    gc: GcApp = await start()
    assert gc.health_port == 0
    assert await statuses(gc.http_port, OPS) == dict.fromkeys(OPS, 200)


@pytest.mark.parametrize(
    ("bind", "why"),
    [("127.0.0.1:8080", "both listen on one port"), ("nonsense", "health_bind")],
)
def test_a_health_bind_must_be_an_address_of_its_own(
    settings: Callable[..., GcSettings], bind: str, why: str
) -> None:
    with pytest.raises(ValidationError, match=why):
        settings(http_bind="127.0.0.1:8080", health_bind=bind)
