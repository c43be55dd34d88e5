"""A whole fleet in the test's own event loop, for the client and join-answer tests.

`in_process_fleet` starts a real GC (`GcApp`: SQLite in the test's directory, gRPC and HTTP on
loopback), MCs (`McApp`: gRPC, health and client signaling on loopback, registered with the
GC through gRPC, against the test Redis) and simulated MHs (`MhSimulator`), with fresh keys;
it waits until the GC sees every MC and MH healthy, so a join places at once, and stops all
of it afterwards, pass or fail. GC timings are short so that heartbeats arrive within a second.

`Watcher` follows a `ClientSession`'s events for a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from darktower.auth.client import ServiceTokenProvider
from darktower.auth.fleet_keys import FleetKeys, generate_fleet_keys
from darktower.auth.keys import load_private_key
from darktower.auth.tokens import GC_AUDIENCE, SERVICE_PROFILES
from darktower.client.session import ClientSession, SessionEvent
from darktower.common.backoff import RegistrationBackoff
from darktower.embedded.redis import free_port
from darktower.gc.domain import Health
from darktower.gc.server import GcApp
from darktower.gc.settings import GcSettings
from darktower.mc.server import McApp
from darktower.mc.settings import McSettings
from darktower.mhsim.simulator import MhConfig, MhSimulator

__all__ = ["REGION", "InProcessFleet", "Watcher", "in_process_fleet"]

E = TypeVar("E")
EVENT_TIMEOUT_S = 10.0

REGION = "test"
READY_TIMEOUT_S = 20.0


@dataclass
class InProcessFleet:
    key_dir: Path  # `<service>/<id>.key` and `.pub` per instance (darktower.auth.fleet_keys)
    gc: GcApp
    mcs: list[McApp] = field(default_factory=list)
    mhs: list[MhSimulator] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def gc_url(self) -> str:
        return f"http://127.0.0.1:{self.gc.http_port}"

    @property
    def gc_grpc(self) -> str:
        return f"http://127.0.0.1:{self.gc.grpc_port}"

    def mc(self, mc_id: str) -> McApp:
        return next(m for m in self.mcs if m.settings.id == mc_id)

    async def wait_healthy(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Until the GC has every MC and MH of the fleet as healthy."""
        store = self.gc.store
        assert store is not None
        wanted_mcs = {m.settings.id for m in self.mcs}
        wanted_mhs = {m.config.handler_id for m in self.mhs}
        async with asyncio.timeout(timeout):
            while True:
                mcs = {c.id for c in await store.list_controllers() if c.health == Health.HEALTHY}
                mhs = {
                    h.id for h in await store.list_media_handlers() if h.health == Health.HEALTHY
                }
                if wanted_mcs <= mcs and wanted_mhs <= mhs:
                    return
                await asyncio.sleep(0.05)


def _tokens(keys: FleetKeys, service: str, issuer: str) -> ServiceTokenProvider:
    """`issuer`'s tokens to the GC, signed with its own bound key."""
    service_type, scope = SERVICE_PROFILES[service]
    return ServiceTokenProvider(
        load_private_key(keys.key(service, issuer)),
        service_type=service_type,
        scope=scope,
        issuer=issuer,
        audience=GC_AUDIENCE,
    )


@contextlib.asynccontextmanager
async def in_process_fleet(
    tmp_path: Path,
    redis_url: str,
    *,
    mcs: int = 1,
    mhs: int = 1,
    mc_overrides: dict[str, Any] | None = None,
    gc_overrides: dict[str, Any] | None = None,
) -> AsyncIterator[InProcessFleet]:
    """A started fleet (see the module docstring); the caller flushed Redis beforehand."""
    key_dir = tmp_path / "keys"
    # One key per instance (`key_dir/<service>/<id>.key`), trusted by directory; a directory
    # is never empty (the GC refuses to trust nobody), even in a fleet without MCs or MHs.
    keys = generate_fleet_keys(
        key_dir,
        gcs=["gc-test"],
        mcs=[f"mc-{i + 1}" for i in range(max(mcs, 1))],
        mhs=[f"mh-{i + 1}" for i in range(max(mhs, 1))],
    )
    gc_values: dict[str, Any] = {
        "id": "gc-test",
        "region": REGION,
        "grpc_bind": f"127.0.0.1:{free_port()}",
        "http_bind": f"127.0.0.1:{free_port()}",
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'gc.sqlite3'}",
        "service_key_file": keys.key("gc", "gc-test"),
        "trusted_mc_key_files": [keys.trusted("mc")],
        "trusted_mh_key_files": [keys.trusted("mh")],
        "fast_heartbeat_ms": 200,
        "comprehensive_heartbeat_ms": 300,
        "mh_load_report_ms": 200,
        "staleness_seconds": 5.0,
        "sweep_interval_seconds": 0.5,
        "mc_call_timeout_seconds": 5.0,
        "allow_guests": True,  # joins without an access token, unless a test overrides
    }
    gc_values.update(gc_overrides or {})
    fleet = InProcessFleet(key_dir=key_dir, gc=GcApp(GcSettings(**gc_values)))
    # Every MC of a fleet shares the binding secret, so that sessions survive a failover.
    binding_secret = secrets.token_urlsafe(32)
    try:
        await fleet.gc.start()
        for i in range(mhs):
            mh = MhSimulator(
                fleet.gc_grpc,
                MhConfig(
                    handler_id=f"mh-{i + 1}",
                    region=REGION,
                    zone=f"zone-{i % 2}",
                    webtransport_endpoint=f"https://mh-{i + 1}.example:4433",
                    grpc_endpoint=f"http://127.0.0.1:{free_port()}",
                    target_load=0.1,
                ),
                _tokens(keys, "mh", f"mh-{i + 1}"),
                backoff=RegistrationBackoff(base=0.1, cap=0.5),
            )
            fleet.mhs.append(mh)
            fleet._tasks.append(asyncio.get_running_loop().create_task(mh.run()))
        for i in range(mcs):
            values: dict[str, Any] = {
                "id": f"mc-{i + 1}",
                "region": REGION,
                "grpc_bind": f"127.0.0.1:{free_port()}",
                "health_bind": f"127.0.0.1:{free_port()}",
                "client_bind": f"127.0.0.1:{free_port()}",
                "binding_token_secret": binding_secret,
                "redis_url": redis_url,
                "gc_endpoint": fleet.gc_grpc,
                "service_key_file": keys.key("mc", f"mc-{i + 1}"),
                "trusted_gc_key_files": [keys.trusted("gc")],
                "max_meetings": 100,
                "max_participants": 10_000,
                "drain_seconds": 2,
                "redis_check_seconds": 0.2,
                "registration_backoff_base": 0.1,
                "registration_backoff_cap": 0.5,
            }
            values.update(mc_overrides or {})
            mc = McApp(McSettings(**values))
            fleet.mcs.append(mc)
            await mc.start()
        await fleet.wait_healthy()
        yield fleet
    finally:
        for task in fleet._tasks:
            task.cancel()
        await asyncio.gather(*fleet._tasks, return_exceptions=True)
        for mh in fleet.mhs:
            await mh.aclose()
        for mc in fleet.mcs:
            await mc.stop(deadline_seconds=2)
        await fleet.gc.stop()


class Watcher:
    """Reads a session's events in the background; `expect` waits for the next one of a kind
    (optionally matching), keeping everything seen in `history`."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session
        self.history: list[SessionEvent] = []
        self._cursor = 0
        self._arrived = asyncio.Condition()
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for event in self.session.events():
            async with self._arrived:
                self.history.append(event)
                self._arrived.notify_all()

    async def expect(
        self,
        kind: type[E],
        where: Callable[[E], bool] = lambda _: True,
        timeout: float = EVENT_TIMEOUT_S,
    ) -> E:
        def found() -> E | None:
            for i in range(self._cursor, len(self.history)):
                event = self.history[i]
                if isinstance(event, kind) and where(event):
                    self._cursor = i + 1
                    return event
            return None

        async with asyncio.timeout(timeout), self._arrived:
            while (event := found()) is None:
                await self._arrived.wait()
        return event

    def seen(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.history if isinstance(e, kind)]

    async def aclose(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
