"""Fixtures for the Meeting Controller: keys, an in-process MC on loopback, a GC-side client.

The helpers tests import (`RunningMc`, `assign_request`, `token_provider`) live in
`tests.support`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from darktower.auth.keys import generate_key_files
from darktower.embedded.redis import free_port
from darktower.mc.server import McApp
from darktower.mc.settings import McSettings
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc
from tests.support.keys import TEST_BINDING_SECRET, token_provider
from tests.support.mc import RunningMc


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("keys")
    generate_key_files(out)
    return out


@pytest.fixture
def gc_metadata(key_dir: Path) -> tuple[tuple[str, str], ...]:
    """A GC token for the default MC ("mc-test"), signed with the legacy unbound gc.key."""
    return token_provider(key_dir, "gc", audience="mc-test").metadata()


@pytest.fixture
def mc_settings(redis_url: str, key_dir: Path) -> Callable[..., McSettings]:
    def make(**overrides: Any) -> McSettings:
        values: dict[str, Any] = {
            "id": "mc-test",
            "region": "test",
            "grpc_bind": f"127.0.0.1:{free_port()}",
            "health_bind": f"127.0.0.1:{free_port()}",
            "client_bind": f"127.0.0.1:{free_port()}",
            "binding_token_secret": TEST_BINDING_SECRET,
            "redis_url": redis_url,
            "gc_endpoint": "",
            "trusted_gc_key_files": [key_dir / "gc.pub"],
            # The legacy trio by opt-in; bound keys and audiences: test_audience.py.
            "allow_unbound_keys": True,
            "max_meetings": 100,
            "max_participants": 10000,
            "drain_seconds": 5,
            "redis_check_seconds": 0.2,
        }
        values.update(overrides)
        return McSettings(**values)

    return make


@pytest.fixture
async def start_mc(
    redis_client: Any,  # flushes the database first
    mc_settings: Callable[..., McSettings],
    key_dir: Path,
) -> AsyncIterator[Callable[..., Awaitable[RunningMc]]]:
    """Start in-process MCs (real gRPC and HTTP servers on loopback); all stopped afterwards."""
    started: list[tuple[McApp, grpc.aio.Channel]] = []

    async def start(app: McApp | None = None, **overrides: Any) -> RunningMc:
        app = app or McApp(mc_settings(**overrides))
        await app.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}")
        started.append((app, channel))
        return RunningMc(
            app=app,
            stub=pb_grpc.MeetingControllerServiceStub(channel),
            metadata=token_provider(key_dir, "gc", audience=app.settings.id).metadata(),
            health_url=f"http://{app.settings.health_bind}",
        )

    try:
        yield start
    finally:
        for app, channel in started:
            await channel.close(None)
            await app.stop(deadline_seconds=2)


@pytest.fixture
async def mc(start_mc: Callable[..., Awaitable[RunningMc]]) -> RunningMc:
    return await start_mc()
