"""Fixtures for the Meeting Controller: keys, an in-process MC on loopback, a GC-side client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from darktower.auth.client import ServiceTokenProvider
from darktower.auth.keys import generate_key_files, load_private_key
from darktower.auth.tokens import SERVICE_PROFILES
from darktower.embedded.redis import free_port
from darktower.mc.server import McApp
from darktower.mc.settings import McSettings
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

TEST_BINDING_SECRET = "test-binding-secret-3f9a1c"


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("keys")
    generate_key_files(out)
    return out


def token_provider(key_dir: Path, service: str) -> ServiceTokenProvider:
    service_type, scope = SERVICE_PROFILES[service]
    return ServiceTokenProvider(
        load_private_key(key_dir / f"{service}.key"),
        service_type=service_type,
        scope=scope,
        issuer=f"test-{service}",
    )


@pytest.fixture
def gc_metadata(key_dir: Path) -> tuple[tuple[str, str], ...]:
    return token_provider(key_dir, "gc").metadata()


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
            "max_meetings": 100,
            "max_participants": 10000,
            "drain_seconds": 5,
            "redis_check_seconds": 0.2,
        }
        values.update(overrides)
        return McSettings(**values)

    return make


@dataclass
class RunningMc:
    app: McApp
    stub: pb_grpc.MeetingControllerServiceAsyncStub
    metadata: tuple[tuple[str, str], ...]
    health_url: str

    async def assign(
        self, meeting_id: str, *, mhs: int = 1, timeout: float = 10
    ) -> pb.AssignMeetingWithMhResponse:
        return await self.stub.AssignMeetingWithMh(
            assign_request(meeting_id, mhs=mhs), metadata=self.metadata, timeout=timeout
        )


def assign_request(meeting_id: str, *, mhs: int = 1) -> pb.AssignMeetingWithMhRequest:
    return pb.AssignMeetingWithMhRequest(
        meeting_id=meeting_id,
        mh_assignments=[
            pb.MhAssignment(
                mh_id=f"mh-{i}",
                webtransport_endpoint=f"https://mh-{i}.example:4433",
                role=pb.MH_ROLE_PRIMARY if i == 0 else pb.MH_ROLE_BACKUP,
            )
            for i in range(mhs)
        ],
        requesting_gc_id="gc-test",
    )


@pytest.fixture
async def start_mc(
    redis_client: Any,  # flushes the database first
    mc_settings: Callable[..., McSettings],
    gc_metadata: tuple[tuple[str, str], ...],
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
            metadata=gc_metadata,
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
