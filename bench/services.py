"""The service factories a `Host` process runs ("bench.services:mc_service", ...): a real
`McApp`, a real `GcApp` (on PostgreSQL or SQLite, `bench.database`), and a group of simulated
MHs, each with the commands the benchmarks send it (`meetings`, `connections`, `end_all`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bench.context import REGION
from bench.hosting import Service

__all__ = ["gc_service", "mc_service", "mh_service"]


class _McService:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.info = {
            "grpc_port": app.grpc_port,
            "id": app.settings.id,
            "client_port": app.client_port,
        }

    async def command(self, message: Mapping[str, Any]) -> dict[str, Any]:
        if message["cmd"] == "meetings":
            return {"ok": True, "meetings": len(self.app.controller.meetings)}
        if message["cmd"] == "connections":
            return {"ok": True, "connections": await self._attach(int(message["per_meeting"]))}
        if message["cmd"] == "end_all":
            from darktower.mc.controller import EndAll

            self.app.controller.send(EndAll("bench"))
            if not await self.app.controller.wait_empty(60):
                raise TimeoutError("meetings did not end within 60 s")
            return {"ok": True}
        if message["cmd"] == "drain":
            # What SIGTERM runs (`darktower.mc.server.serve`): migrate, end the rest, stop.
            started = time.perf_counter()
            await self.app.drain()
            report = self.app.drain_report
            return {
                "ok": True,
                "seconds": time.perf_counter() - started,
                "migrated": len(report.migrated) if report else 0,
                "ended": len(report.ended) if report else 0,
                "failed": len(report.failed) if report else 0,
            }
        raise ValueError(f"unknown command {message['cmd']}")

    async def _attach(self, per_meeting: int) -> int:
        """Create `per_meeting` ConnectionActors under each hosted meeting (no-op outbox),
        started as the meeting's children without a participant (the bench MC admits no
        clients: it measures what the connection actors cost, not joins)."""
        from darktower.mc.connection import ConnectionActor

        async def outbox(_frame: object) -> None:
            return None

        meetings = list(self.app.controller.meetings.values())
        already = sum(len(m.children) for m in meetings)
        for meeting in meetings:
            for i in range(per_meeting):
                name = f"{meeting.meeting_id}-c{i}"
                meeting.spawn(ConnectionActor(name, f"p{i}", outbox))
        # Children, not participant_count: an attached connection has no participant yet.
        expected = already + per_meeting * len(meetings)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            total = int(sum(len(m.children) for m in meetings))
            if total >= expected:
                return total
            await asyncio.sleep(0.05)
        raise TimeoutError("connections were not attached within 60 s")

    async def stop(self) -> None:
        await self.app.stop(deadline_seconds=3)


async def mc_service(params: Mapping[str, Any]) -> Service:
    """An McApp: params id, redis_url, gc_endpoint ("" = standalone), max_meetings,
    meeting_touch_seconds, clients (serve client signaling on a free port, with
    `binding_secret`), drain_seconds."""
    from darktower.mc.server import McApp
    from darktower.mc.settings import McSettings

    keys = Path(params["keys"])
    settings = McSettings(
        id=params["id"],
        region=REGION,
        grpc_bind="127.0.0.1:0",
        health_bind="127.0.0.1:0",
        redis_url=SecretStr(params["redis_url"]),
        gc_endpoint=params.get("gc_endpoint", ""),
        service_key_file=keys / "mc.key",
        trusted_gc_key_files=[keys / "gc.pub"],
        # The bench shares the legacy trio between its simulated instances: by opt-in.
        allow_unbound_keys=True,
        max_meetings=params.get("max_meetings", 1000),
        max_participants=params.get("max_participants", 10_000_000),
        meeting_touch_seconds=params.get("meeting_touch_seconds", 5.0),
        drain_seconds=params.get("drain_seconds", 3),
        # No client signaling unless asked (`migration`): the others drive the MC through gRPC.
        client_enabled=bool(params.get("clients", False)),
        client_bind="127.0.0.1:0",
        client_tls=False,
        binding_token_secret=(
            SecretStr(params["binding_secret"]) if params.get("clients") else None
        ),
        registration_backoff_base=0.1,
        registration_backoff_cap=0.5,
    )
    app = McApp(settings)
    await app.start()
    return _McService(app)


class _LoopLag:
    """How late the service's event loop runs a timer due every `period_s`, between `start()`
    and `stop()`: a stall of the loop (a long callback, a collection, the process waiting for
    a core) shows as a late timer. Off unless started: its wake-ups cost the loop a little."""

    def __init__(self, period_s: float = 0.01) -> None:
        self._period = period_s
        self._task: asyncio.Task[None] | None = None
        self._late_ms: list[float] = []

    def start(self) -> None:
        if self._task is None:
            self._late_ms = []
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> list[float]:
        """The lateness of every timer since `start()`, in ms."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return self._late_ms

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self._period
            await asyncio.sleep(self._period)
            self._late_ms.append(max(0.0, loop.time() - due) * 1000)


class _GcService:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.info = {"grpc_port": app.grpc_port, "http_port": app.http_port}
        self._lag = _LoopLag()

    async def command(self, message: Mapping[str, Any]) -> dict[str, Any]:
        if message["cmd"] == "lag_start":
            self._lag.start()
            return {"ok": True}
        if message["cmd"] == "lag":
            return {"ok": True, "late_ms": await self._lag.stop()}
        raise ValueError(f"unknown command {message['cmd']}")

    async def stop(self) -> None:
        await self._lag.stop()
        await self.app.stop()


async def gc_service(params: Mapping[str, Any]) -> Service:
    """A GcApp; params database_url (default: a SQLite file in workdir), id, staleness_s,
    sweep_s, fast_ms, comprehensive_ms."""
    from darktower.gc.server import GcApp
    from darktower.gc.settings import GcSettings

    keys = Path(params["keys"])
    database = params.get("database_url") or (
        f"sqlite+aiosqlite:///{Path(params['workdir']) / params['name']}.db"
    )
    settings = GcSettings(
        id=params.get("id", "gc-bench"),
        region=REGION,
        grpc_bind="127.0.0.1:0",
        http_bind="127.0.0.1:0",
        database_url=SecretStr(database),
        service_key_file=keys / "gc.key",
        trusted_mc_key_files=[keys / "mc.pub"],
        trusted_mh_key_files=[keys / "mh.pub"],
        # One shared mc.key / mh.key for every simulated MC and MH: by opt-in. Each still acts
        # only as itself (its tokens' `sub`), so identity binding is measured too.
        allow_unbound_keys=True,
        # The benchmarks measure placement, not access control or the abuse limits: joins come
        # as guests from one loopback address, far faster than a real client would.
        allow_guests=True,
        join_rate_per_ip=1e9,
        join_burst_per_ip=1_000_000,
        staleness_seconds=params.get("staleness_s", 30.0),
        sweep_interval_seconds=params.get("sweep_s", 5.0),
        fast_heartbeat_ms=params.get("fast_ms", 10_000),
        comprehensive_heartbeat_ms=params.get("comprehensive_ms", 30_000),
        mh_load_report_ms=params.get("fast_ms", 10_000),
    )
    app = GcApp(settings)
    await app.start()
    return _GcService(app)


class _MhGroup:
    def __init__(self, simulators: list[Any], tasks: list[asyncio.Task[None]]) -> None:
        self._simulators = simulators
        self._tasks = tasks
        self.info: dict[str, Any] = {"mhs": [s.config.handler_id for s in simulators]}

    async def command(self, message: Mapping[str, Any]) -> dict[str, Any]:
        raise ValueError(f"unknown command {message['cmd']}")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(s.aclose() for s in self._simulators), return_exceptions=True)


async def mh_service(params: Mapping[str, Any]) -> Service:
    """Simulated MHs (params gc_endpoint, count), registered and reporting, in one process."""
    from darktower.auth.client import ServiceTokenProvider
    from darktower.auth.keys import load_private_key
    from darktower.auth.tokens import GC_AUDIENCE, SERVICE_PROFILES
    from darktower.mhsim.simulator import MhConfig, MhSimulator

    service_type, scope = SERVICE_PROFILES["mh"]
    key = load_private_key(Path(params["keys"]) / "mh.key")

    def tokens(handler_id: str) -> ServiceTokenProvider:
        # Each MH acts as itself (`sub`) at the GC (the fleet audience).
        return ServiceTokenProvider(
            key, service_type=service_type, scope=scope, issuer=handler_id, audience=GC_AUDIENCE
        )

    simulators = [
        MhSimulator(
            params["gc_endpoint"],
            MhConfig(
                handler_id=f"mh-{i + 1}",
                region=REGION,
                zone=("zone-a", "zone-b")[i % 2],
                webtransport_endpoint=f"https://mh-{i + 1}.bench.invalid:4433",
                grpc_endpoint=f"http://mh-{i + 1}.bench.invalid:50053",
            ),
            tokens(f"mh-{i + 1}"),
        )
        for i in range(int(params["count"]))
    ]
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(s.run()) for s in simulators]
    return _MhGroup(simulators, tasks)
