"""The GC's service trust as an operator configures it (issue 13), over real gRPC on loopback
against a real `GcApp` (SQLite store):

* `GC_SERVICE_TOKEN_MAX_LIFETIME_SECONDS`: an MC or MH token living one second longer than the
  GC's maximum is UNAUTHENTICATED (`too_long_lived`, counted) and registers nothing; one at the
  maximum registers. The maximum holds across a key reload.
* `GC_TRUSTED_MC_KEY_FILES` / `GC_TRUSTED_MH_KEY_FILES` directories re-read on reload (what
  SIGHUP runs): an instance whose `.pub` is added is let in, one whose `.pub` is removed is
  refused from then on, without a restart.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest
from prometheus_client import REGISTRY

from darktower.auth.fleet_keys import FleetKeys, generate_fleet_keys
from darktower.auth.keys import generate_instance_key_files, load_private_key
from darktower.auth.tokens import GC_AUDIENCE, SERVICE_PROFILES, mint_service_token
from darktower.embedded.redis import free_port
from darktower.gc.server import GcApp
from darktower.gc.settings import GcSettings
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

REGION = "local"
MAXIMUM = 300


@dataclass
class Gc:
    app: GcApp
    keys: FleetKeys
    mcs: pb_grpc.GlobalControllerServiceAsyncStub
    mhs: pb_grpc.MediaHandlerRegistryServiceAsyncStub

    async def register_mc(self, key: Path, mc_id: str, *, ttl: int = 300) -> grpc.StatusCode:
        request = pb.RegisterMCRequest(
            id=mc_id,
            region=REGION,
            grpc_endpoint=f"http://{mc_id}.internal:50052",
            webtransport_endpoint=f"http://{mc_id}.internal:8090",
            max_meetings=10,
            max_participants=100,
        )
        return await _code(self.mcs.RegisterMC(request, metadata=_token(key, "mc", mc_id, ttl)))

    async def register_mh(self, key: Path, mh_id: str, *, ttl: int = 300) -> grpc.StatusCode:
        request = pb.RegisterMHRequest(
            handler_id=mh_id,
            region=REGION,
            webtransport_endpoint=f"https://{mh_id}.internal:4433",
            grpc_endpoint=f"http://{mh_id}.internal:50053",
            max_streams=100,
        )
        return await _code(self.mhs.RegisterMH(request, metadata=_token(key, "mh", mh_id, ttl)))

    async def registered(self) -> set[str]:
        store = self.app.store
        assert store is not None
        controllers = {c.id for c in await store.list_controllers()}
        return controllers | {h.id for h in await store.list_media_handlers()}


def _token(key: Path, service: str, instance: str, ttl: int) -> tuple[tuple[str, str], ...]:
    service_type, scope = SERVICE_PROFILES[service]
    token = mint_service_token(
        load_private_key(key),
        service_type=service_type,
        scope=scope,
        issuer=instance,
        audience=GC_AUDIENCE,
        ttl_seconds=ttl,
    )
    return (("authorization", f"Bearer {token}"),)


async def _code(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def too_long_lived() -> float:
    value = REGISTRY.get_sample_value(
        "service_auth_failures_total", {"service": "gc", "reason": "too_long_lived"}
    )
    return value or 0.0


@pytest.fixture
async def gc(tmp_path: Path) -> AsyncIterator[Gc]:
    keys = generate_fleet_keys(tmp_path / "keys", mcs=["mc-1"], mhs=["mh-1"])
    app = GcApp(
        GcSettings(
            id="gc-1",
            region=REGION,
            grpc_bind=f"127.0.0.1:{free_port()}",
            http_bind=f"127.0.0.1:{free_port()}",
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'gc.sqlite3'}",
            service_key_file=keys.key("gc", "gc-1"),
            trusted_mc_key_files=[keys.trusted("mc")],
            trusted_mh_key_files=[keys.trusted("mh")],
            heartbeat_flush_ms=0,
            service_token_max_lifetime_seconds=MAXIMUM,
        )
    )
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


async def test_tokens_longer_than_the_gcs_maximum_are_refused(gc: Gc) -> None:
    mc_key, mh_key = gc.keys.key("mc", "mc-1"), gc.keys.key("mh", "mh-1")
    before = too_long_lived()

    # 600 s is the default maximum: this GC was told 300.
    assert await gc.register_mc(mc_key, "mc-1", ttl=MAXIMUM + 1) == grpc.StatusCode.UNAUTHENTICATED
    assert await gc.register_mc(mc_key, "mc-1", ttl=600) == grpc.StatusCode.UNAUTHENTICATED
    assert await gc.register_mh(mh_key, "mh-1", ttl=MAXIMUM + 1) == grpc.StatusCode.UNAUTHENTICATED
    assert too_long_lived() == before + 3
    assert await gc.registered() == set()

    gc.app.reloads.run()  # a reload swaps the keys, never the maximum
    assert await gc.register_mc(mc_key, "mc-1", ttl=MAXIMUM + 1) == grpc.StatusCode.UNAUTHENTICATED

    assert await gc.register_mc(mc_key, "mc-1", ttl=MAXIMUM) == grpc.StatusCode.OK
    assert await gc.register_mh(mh_key, "mh-1", ttl=MAXIMUM) == grpc.StatusCode.OK
    assert await gc.registered() == {"mc-1", "mh-1"}


@pytest.mark.parametrize("service", ["mc", "mh"])
async def test_a_trusted_directory_is_re_read_on_reload(
    gc: Gc, tmp_path: Path, service: str
) -> None:
    register = gc.register_mc if service == "mc" else gc.register_mh
    newcomer = f"{service}-7"
    later = tmp_path / "later"
    generate_instance_key_files(later, service=service, instance_id=newcomer)
    key = later / f"{newcomer}.key"

    assert await register(key, newcomer) == grpc.StatusCode.UNAUTHENTICATED
    shutil.copy(later / f"{newcomer}.pub", gc.keys.trusted(service))
    # Trusted from the reload on (SIGHUP runs `reloads`), not before.
    assert await register(key, newcomer) == grpc.StatusCode.UNAUTHENTICATED
    gc.app.reloads.run()
    assert await register(key, newcomer) == grpc.StatusCode.OK
    assert newcomer in await gc.registered()

    (gc.keys.trusted(service) / f"{newcomer}.pub").unlink()
    gc.app.reloads.run()
    assert await register(key, newcomer) == grpc.StatusCode.UNAUTHENTICATED
    # The instances trusted all along are still let in.
    old = gc.keys.key(service, f"{service}-1")
    assert await register(old, f"{service}-1") == grpc.StatusCode.OK
