"""Running an MC: `McApp` wires the parts, `serve()` owns start, wait and a graceful stop.

Start order: Redis client and monitor, controller actor, gRPC server (auth interceptor on every
RPC), health HTTP. Stop (SIGTERM/SIGINT): stop admitting (draining), stop the gRPC server with a
short grace, stop the actors within the deadline (`MC_DRAIN_SECONDS`), close Redis; exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

import grpc
import redis.asyncio as aioredis
import uvicorn

from darktower.auth.interceptor import GRPC_SERVER_OPTIONS, ServiceAuthInterceptor
from darktower.auth.keys import load_public_keys
from darktower.auth.tokens import SCOPE_MC, ServiceType, TokenVerifier
from darktower.fencing import FencedStore, RedisFencedStore
from darktower.mc.assign import Assigner
from darktower.mc.controller import MeetingControllerActor, SetDraining
from darktower.mc.grpc_service import MeetingControllerServicer
from darktower.mc.http import EmbeddedUvicorn, health_app
from darktower.mc.metrics import READY
from darktower.mc.redis_monitor import RedisMonitor
from darktower.mc.settings import McSettings, parse_bind
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

__all__ = ["McApp", "StartupError", "serve"]

log = logging.getLogger(__name__)

GRPC_STOP_GRACE_SECONDS = 2.0


class StartupError(RuntimeError):
    """The MC cannot start with this configuration (message is safe to print)."""


class McApp:
    def __init__(self, settings: McSettings, *, store: FencedStore | None = None) -> None:
        """`store` replaces the Redis store built from the settings (fault-injection tests)."""
        if not settings.trusted_gc_key_files:
            raise StartupError("MC_TRUSTED_GC_KEY_FILES is empty: no GC could call this MC")
        self.settings = settings
        verifier = TokenVerifier(
            load_public_keys(settings.trusted_gc_key_files),
            required_scope=SCOPE_MC,
            allowed_callers={ServiceType.GLOBAL_CONTROLLER},
        )
        self.redis = aioredis.Redis.from_url(
            settings.redis_url.get_secret_value(),
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
            retry_on_timeout=False,
        )
        self.store: FencedStore = store or RedisFencedStore(
            self.redis, replica_wait=settings.redis_replica_wait
        )
        self.monitor = RedisMonitor(self.store.ping, interval=settings.redis_check_seconds)
        self.controller = MeetingControllerActor(
            settings.id,
            store=self.store,
            max_meetings=settings.max_meetings,
            max_participants=settings.max_participants,
            participant_estimate=settings.participant_estimate,
            is_ready=lambda: self.ready()[0],
            touch_interval=settings.meeting_touch_seconds,
        )
        self.assigner = Assigner(
            self.controller, self.store, on_store_failure=self.monitor.mark_unhealthy
        )
        self.grpc_server = grpc.aio.server(
            interceptors=[ServiceAuthInterceptor(verifier, service="mc")],
            options=GRPC_SERVER_OPTIONS,
        )
        pb_grpc.add_MeetingControllerServiceServicer_to_server(
            MeetingControllerServicer(self.assigner), self.grpc_server
        )
        self.grpc_port = 0
        self._http: EmbeddedUvicorn | None = None
        self._http_task: asyncio.Task[None] | None = None

    def ready(self) -> tuple[bool, str]:
        if self.controller.draining:
            return False, "draining"
        if not self.monitor.healthy:
            return False, "redis unreachable"
        return True, ""

    async def start(self) -> None:
        await self.monitor.check()
        self.monitor.start()
        self.controller.start()
        host, port = parse_bind(self.settings.grpc_bind)
        self.grpc_port = self.grpc_server.add_insecure_port(f"{host}:{port}")
        if self.grpc_port == 0:
            raise StartupError(f"cannot bind the gRPC port {self.settings.grpc_bind}")
        await self.grpc_server.start()
        http_host, http_port = parse_bind(self.settings.health_bind)
        config = uvicorn.Config(
            health_app(self.ready),
            host=http_host,
            port=http_port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        self._http = EmbeddedUvicorn(config)
        self._http_task = asyncio.get_running_loop().create_task(self._http.serve())
        while not self._http.started:
            if self._http_task.done():
                raise StartupError(f"cannot serve health HTTP on {self.settings.health_bind}")
            await asyncio.sleep(0.01)
        READY.set_function(lambda: 1.0 if self.ready()[0] else 0.0)
        log.info(
            "MC %s serving gRPC on %s:%d, health on %s (redis %s)",
            self.settings.id,
            host,
            self.grpc_port,
            self.settings.health_bind,
            "reachable" if self.monitor.healthy else "unreachable",
        )

    async def stop(self, deadline_seconds: float | None = None) -> None:
        """Stop admitting, then stop everything within the deadline (drain seconds)."""
        budget = self.settings.drain_seconds if deadline_seconds is None else deadline_seconds
        deadline = time.monotonic() + budget
        if self.controller.running:
            self.controller.send(SetDraining())
        await self.grpc_server.stop(grace=min(GRPC_STOP_GRACE_SECONDS, budget))
        await self.controller.stop(timeout=max(0.0, deadline - time.monotonic()))
        await self.monitor.stop()
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True
            await asyncio.gather(self._http_task, return_exceptions=True)
        await self.redis.aclose()
        log.info("MC %s stopped", self.settings.id)


async def serve(settings: McSettings) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully."""
    app = McApp(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await app.start()
    await stop.wait()
    log.info("signal received: draining")
    await app.stop()
