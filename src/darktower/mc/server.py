"""Running an MC: `McApp` wires the parts, `serve()` owns start, wait and a graceful stop.

Start order: Redis client and monitor, controller actor, gRPC server (auth interceptor on every
RPC), client signaling (WebSocket, unless MC_CLIENT_ENABLED=false), health HTTP. Stop
(SIGTERM/SIGINT): stop admitting (draining), close the client sockets (their participants turn
disconnected, so they can reconnect wherever the meeting goes), stop the gRPC server with a
short grace, stop the actors within the deadline (`MC_DRAIN_SECONDS`), close Redis, log what
became of the background tasks; exit 0.

The background loops (GC link, Redis monitor, the controller's touch loop, the health HTTP
server) run under one `TaskSupervisor`: one that crashes makes the MC not ready, naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time

from darktower.actors import ActorStopped
from darktower.auth.client import ServiceTokenProvider
from darktower.auth.grpc_server import service_grpc_server
from darktower.auth.interceptor import ServiceAuthInterceptor
from darktower.auth.keys import ServiceKey
from darktower.auth.tokens import GC_AUDIENCE, SCOPE_GC, SCOPE_MC, ServiceType, TokenVerifier
from darktower.common.backoff import RegistrationBackoff
from darktower.fencing import FencedStore, RedisFencedStore
from darktower.mc.assign import Assigner
from darktower.mc.binding import RedisNonceLedger, SessionBinder
from darktower.mc.controller import EndAll, MeetingControllerActor, SetDraining
from darktower.mc.gc_client import GcClient
from darktower.mc.gc_link import GcLink, Registration
from darktower.mc.grpc_service import MeetingControllerServicer
from darktower.mc.health import derive_health
from darktower.mc.http import health_app
from darktower.mc.join_once import RedisJoinTokenLedger
from darktower.mc.limits import client_limits, meeting_limits
from darktower.mc.media import MediaRegistrar
from darktower.mc.media_watch import MediaWatch
from darktower.mc.meeting_commands import MeetingCommands
from darktower.mc.metrics import READY, TASK_CRASHES, TASKS
from darktower.mc.migration import DrainReport, Migrator
from darktower.mc.redis_monitor import RedisMonitor
from darktower.mc.service_keys import McServiceKeys
from darktower.mc.settings import McSettings
from darktower.mc.signaling_server import SignalingServer
from darktower.runtime.grpc_health import GrpcHealth
from darktower.runtime.grpc_metrics import GrpcServerMetrics
from darktower.runtime.redis_connect import connect
from darktower.runtime.reload import ReloadHooks
from darktower.runtime.serving import (
    GRPC_LISTEN_OPTIONS,
    HttpServer,
    StartupError,
    add_grpc_port,
    cannot_listen,
    parse_bind,
    serve_until_signalled,
)
from darktower.runtime.startup import load_own_key, load_service_tls
from darktower.runtime.supervisor import TaskSupervisor
from darktower.runtime.tls import TlsConfig
from darktower.webhooks.outbox import EventOutbox
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

__all__ = ["McApp", "StartupError", "serve"]

log = logging.getLogger(__name__)

GRPC_STOP_GRACE_SECONDS = 2.0
# Part of the drain deadline kept for ending the remaining meetings and reporting them.
DRAIN_END_MARGIN_SECONDS = 2.0
# Longest the drain waits for the GC to answer its DRAINING heartbeat.
DRAIN_BEAT_TIMEOUT_SECONDS = 1.0
# Longest a stop waits for client sockets to close.
SIGNALING_STOP_SECONDS = 2.0
# A shorter binding-token secret is refused at start (HKDF input; 32 random bytes advised).
MIN_BINDING_SECRET_CHARS = 16
# The Redis monitor's own connections: the periodic ping and a confirming one may overlap.
PING_CONNECTIONS = 2


def _binding_secret(settings: McSettings) -> bytes | None:
    """The master secret for session binding; None with client signaling off."""
    if not settings.client_enabled:
        return None
    if settings.binding_token_secret is None:
        raise StartupError(
            "MC_BINDING_TOKEN_SECRET is needed to serve clients (or set MC_CLIENT_ENABLED=false)"
        )
    secret = settings.binding_token_secret.get_secret_value()
    if len(secret) < MIN_BINDING_SECRET_CHARS:
        raise StartupError(
            f"MC_BINDING_TOKEN_SECRET must be at least {MIN_BINDING_SECRET_CHARS} characters"
        )
    return secret.encode("utf-8")


def _tls(settings: McSettings) -> TlsConfig:
    return load_service_tls(settings, prefix="MC")


def _signing_key(settings: McSettings) -> ServiceKey:
    """The MC's own key; a key bound to another instance (or service) is refused at start."""
    assert settings.service_key_file is not None
    return load_own_key(
        settings.service_key_file,
        instance_id=settings.id,
        service_type=ServiceType.MEETING_CONTROLLER,
        prefix="MC",
    )


class McApp:
    def __init__(self, settings: McSettings, *, store: FencedStore | None = None) -> None:
        """`store` replaces the Redis store built from the settings (fault-injection tests)."""
        if not settings.trusted_gc_key_files and not settings.trusted_gc_jwks_url:
            raise StartupError(
                "MC_TRUSTED_GC_KEY_FILES and MC_TRUSTED_GC_JWKS_URL are empty: no GC could call "
                "this MC"
            )
        self.settings = settings
        self.tasks = TaskSupervisor(TASKS, crashes=TASK_CRASHES)
        self.tls = _tls(settings)
        secret = _binding_secret(settings)
        # The GC keys trusted (files and/or the GC's JWKS) and the own key, reloaded on SIGHUP
        # (README "Key rotation").
        self.keys = McServiceKeys(settings, self.tls)
        self.reloads = ReloadHooks()
        self.reloads.add(self.keys.reload)
        verifier = TokenVerifier(
            self.keys.gc.keys,
            required_scope=SCOPE_MC,
            allowed_callers={ServiceType.GLOBAL_CONTROLLER},
            # Only tokens minted for this MC: one captured by (or minted for) another is refused.
            audience=settings.id,
            allow_unbound_keys=settings.allow_unbound_keys,
            max_lifetime_seconds=settings.service_token_max_lifetime_seconds,
        )
        self.keys.follow(verifier)
        redis_url = settings.redis_url.get_secret_value()
        self.redis = connect(redis_url, socket_timeout=2.0, connect_timeout=2.0)
        self.store: FencedStore = store or RedisFencedStore(
            self.redis, replica_wait=settings.redis_replica_wait, audit=settings.redis_audit
        )
        # The reachability check pings on a connection of its own: a burst of store calls
        # queued for the shared pool is load, not an outage, and must not make the MC unready.
        self._ping_redis = connect(
            redis_url, socket_timeout=2.0, connect_timeout=2.0, max_connections=PING_CONNECTIONS
        )
        ping_store = self.store if store is not None else RedisFencedStore(self._ping_redis)
        self.monitor = RedisMonitor(ping_store.ping, interval=settings.redis_check_seconds)
        binder = None
        if secret is not None:
            binder = SessionBinder(
                secret,
                RedisNonceLedger(self.redis),
                ttl_seconds=settings.binding_token_ttl_seconds,
            )
        # The own key, loaded once: it signs calls to the GC and to media handlers.
        self._signing = (
            None
            if settings.service_key_file is None
            else self.keys.sign_with(_signing_key(settings))
        )
        # Participants are registered with their meetings' MHs (README "Media").
        self.media = (
            None
            if self._signing is None
            else MediaRegistrar(self._signing, settings.id, tls=self.tls)
        )
        self.controller = MeetingControllerActor(
            settings.id,
            store=self.store,
            max_meetings=settings.max_meetings,
            max_participants=settings.max_participants,
            participant_estimate=settings.participant_estimate,
            is_ready=lambda: self.ready()[0],
            touch_interval=settings.meeting_touch_seconds,
            on_meeting_ended=self._meeting_ended,
            binder=binder,
            disconnect_grace_seconds=settings.disconnect_grace_seconds,
            tasks=self.tasks,
            meeting_limits=meeting_limits(settings),
            events=(
                EventOutbox(self.redis, retention_seconds=settings.events_retention_hours * 3600)
                if settings.events_enabled
                else None
            ),
            media=self.media,
        )
        self.signaling: SignalingServer | None = None
        if binder is not None:
            self.signaling = SignalingServer(
                settings.client_bind,
                controller=self.controller,
                verifier=self.keys.join_verifier(),
                ssl_context=self._client_ssl_context(),
                limits=client_limits(settings),
                spent_tokens=RedisJoinTokenLedger(self.redis),
            )
        self.link: GcLink | None = None
        if settings.gc_endpoint:
            if self._signing is None:
                raise StartupError("MC_SERVICE_KEY_FILE is needed to call the GC")
            service_type, scope = ServiceType.MEETING_CONTROLLER, SCOPE_GC
            tokens = ServiceTokenProvider(
                self._signing,
                service_type=service_type,
                scope=scope,
                issuer=settings.id,
                subject=settings.id,
                audience=GC_AUDIENCE,
            )
            try:
                self._gc_client = GcClient(settings.gc_endpoint, tokens, tls=self.tls)
            except ValueError as exc:
                raise StartupError(f"MC_GC_ENDPOINT: {exc}") from None
        self.assigner = Assigner(
            self.controller, self.store, on_store_failure=self.monitor.mark_unhealthy
        )
        mc_service = pb.DESCRIPTOR.services_by_name["MeetingControllerService"]
        # grpc.health.v1 follows `ready()`; NOT_SERVING from the first moment of a drain.
        self.grpc_health = GrpcHealth(
            self.ready, services=[mc_service.full_name], reflection_on=settings.grpc_reflection
        )
        self.grpc_server = service_grpc_server(
            interceptors=[
                GrpcServerMetrics([mc_service, *self.grpc_health.descriptors]),
                ServiceAuthInterceptor(verifier, service="mc"),
            ],
            options=GRPC_LISTEN_OPTIONS,
        )
        pb_grpc.add_MeetingControllerServiceServicer_to_server(
            MeetingControllerServicer(
                self.assigner, MeetingCommands(self.controller), drain=self.request_drain
            ),
            self.grpc_server,
        )
        self.grpc_health.add_to(self.grpc_server)
        self.grpc_port = 0
        self._http: HttpServer | None = None
        # Set by an operator's drain (DrainController): `serve` then drains as on SIGTERM.
        self.drain_requested = asyncio.Event()
        self.drain_report: DrainReport | None = None

    def request_drain(self) -> int:
        """Start the drain as SIGTERM does (`serve` waits for this event too); answers the
        meetings hosted. Stops admitting at once, so no meeting is placed here meanwhile."""
        if self.controller.running:
            with contextlib.suppress(ActorStopped):
                self.controller.send(SetDraining())
        self.drain_requested.set()
        return len(self.controller.meetings)

    def _client_ssl_context(self) -> ssl.SSLContext | None:
        """WSS with the MC's certificate, unless MC_CLIENT_TLS=false."""
        if not (self.tls.serving and self.settings.client_tls):
            return None
        return self.tls.server_ssl_context()

    def ready(self) -> tuple[bool, str]:
        crashed = self.tasks.not_ready_reason()
        if crashed is not None:
            return False, crashed
        if self.controller.draining:
            return False, "draining"
        if not self.monitor.healthy:
            return False, "redis unreachable"
        # Before the link starts too: a gRPC health check may come in between.
        if self.settings.gc_endpoint and (self.link is None or not self.link.registered):
            return False, "not registered with the GC"
        return True, ""

    def health(self) -> pb.HealthStatus.ValueType:
        capacity = self.controller.capacity()
        return derive_health(
            draining=capacity.draining,
            redis_ok=self.monitor.healthy,
            task_crashed=bool(self.tasks.failed),
            current_meetings=capacity.current_meetings,
            max_meetings=capacity.max_meetings,
            current_participants=capacity.current_participants,
            max_participants=capacity.max_participants,
        )

    @property
    def client_port(self) -> int:
        """The bound client signaling port (0 before start or with signaling off)."""
        return self.signaling.port if self.signaling is not None else 0

    @property
    def client_endpoint(self) -> str:
        """The client URL registered with the GC ("" with signaling off and no override)."""
        if self.signaling is None:
            return self.settings.client_advertise
        return self.settings.advertised_client_endpoint(self.signaling.port)

    def _meeting_ended(self, meeting_id: str, reason: str) -> None:
        if self.link is not None:
            self.link.meeting_ended(meeting_id)

    async def start(self) -> None:
        """Start every part, then register with the GC. A part that cannot start (a port
        taken) raises `StartupError` after the parts already started are stopped, so nothing
        is left listening."""
        try:
            await self._start_parts()
            self._start_link()
        except BaseException:
            await self.stop(deadline_seconds=GRPC_STOP_GRACE_SECONDS)
            raise
        READY.set_function(lambda: 1.0 if self.ready()[0] else 0.0)
        grpc_host, _ = parse_bind(self.settings.grpc_bind)
        log.info(
            "MC %s serving gRPC%s on %s:%d, clients on %s, health on %s (redis %s)",
            self.settings.id,
            self.tls.log_note,
            grpc_host,
            self.grpc_port,
            self.client_endpoint or "(off)",
            self._http.url if self._http is not None else "(off)",
            "reachable" if self.monitor.healthy else "unreachable",
        )

    def _start_link(self) -> None:
        if self.settings.gc_endpoint:
            # Registration starts once both servers answer, so the GC can call back at once.
            self.link = GcLink(
                self._gc_client,
                Registration(
                    mc_id=self.settings.id,
                    region=self.settings.region,
                    grpc_endpoint=self.settings.advertised_grpc_endpoint(self.grpc_port),
                    client_endpoint=self.client_endpoint,
                    max_meetings=self.settings.max_meetings,
                    max_participants=self.settings.max_participants,
                ),
                capacity=self.controller.capacity,
                health=self.health,
                meeting_loads=self.controller.meeting_loads,
                backoff=RegistrationBackoff(
                    base=self.settings.registration_backoff_base,
                    cap=self.settings.registration_backoff_cap,
                ),
            )
            self.link.start(self.tasks)

    async def _start_parts(self) -> None:
        await self.monitor.check()
        self.monitor.start(self.tasks)
        self.controller.start()
        self.grpc_port = add_grpc_port(
            self.grpc_server, self.settings.grpc_bind, "MC gRPC", tls=self.tls
        )
        await self.grpc_health.start(self.tasks)
        await self.grpc_server.start()
        if self.signaling is not None:
            try:
                await self.signaling.start()
            except OSError as exc:
                raise cannot_listen(self.settings.client_bind, "MC client WebSocket", exc) from None
        self._http = HttpServer(
            health_app(self.ready),
            self.settings.health_bind,
            what="MC health HTTP",
            tasks=self.tasks,
            task_name="health-http",
        )
        await self._http.start()
        self.keys.start(self.tasks)
        self.reloads.install()
        if self.media is not None:  # media failover: README "Media"
            self.tasks.spawn("media-watch", MediaWatch(self.controller, tls=self.tls).run())

    async def drain(self, deadline_seconds: float | None = None) -> None:
        """Stop admitting and tell the GC at once (DRAINING); let meetings end by themselves
        until shortly before the deadline, then end the rest; report every end; stop."""
        budget = self.settings.drain_seconds if deadline_seconds is None else deadline_seconds
        deadline = time.monotonic() + budget
        await self.grpc_health.shutdown()
        if self.controller.running:
            # Handled before the beat below reads the health, so that beat says DRAINING.
            with contextlib.suppress(TimeoutError, ActorStopped):
                await asyncio.wait_for(self.controller.ask(SetDraining()), budget / 4)
        if self.link is not None:
            # Awaited: with nothing hosted, the drain would otherwise stop the link (cancelling
            # that beat) before the GC heard DRAINING.
            await self.link.send_fast_beat(timeout=min(DRAIN_BEAT_TIMEOUT_SECONDS, budget / 4))
        margin = min(DRAIN_END_MARGIN_SECONDS, budget / 2)
        report = DrainReport()
        migrator: Migrator | None = None
        if self.link is not None and self.controller.running:
            # Live migration (README "Rolling upgrades"): every meeting to another MC.
            migrator = Migrator(self.controller, self._gc_client)
            report = await migrator.migrate_all(until=deadline - margin)
        ended = await self.controller.wait_empty(deadline - margin - time.monotonic())
        if not ended and self.controller.running:
            left = [m for m in self.controller.meetings.values() if not m.lost]
            log.info("drain deadline: ending %d meetings", len(left))
            for meeting in left:
                why = (
                    "no migration"
                    if migrator is None
                    else migrator.not_placed.get(meeting.meeting_id, "not migrated")
                )
                log.warning("meeting %s ended at the drain deadline: %s", meeting.meeting_id, why)
                report.ended[meeting.meeting_id] = why
            self.controller.send(EndAll("drained"))
            await self.controller.wait_empty(deadline - margin / 2 - time.monotonic())
            for meeting_id in list(report.ended):
                if meeting_id in self.controller.meetings:
                    report.failed[meeting_id] = report.ended.pop(meeting_id)
        self.drain_report = report
        log.info("drain: %s", report.summary())
        if self.link is not None:
            await self.link.flush(timeout=max(0.1, deadline - time.monotonic()))
        await self.stop(deadline_seconds=max(0.5, deadline - time.monotonic()))

    async def stop(self, deadline_seconds: float | None = None) -> None:
        """Stop admitting, then stop everything within the deadline (drain seconds)."""
        budget = self.settings.drain_seconds if deadline_seconds is None else deadline_seconds
        deadline = time.monotonic() + budget
        await self.grpc_health.shutdown()
        self.reloads.uninstall()
        if self.controller.running:
            self.controller.send(SetDraining())
        if self.signaling is not None:
            await self.signaling.stop(timeout=min(SIGNALING_STOP_SECONDS, budget / 4))
        await self.grpc_server.stop(grace=min(GRPC_STOP_GRACE_SECONDS, budget))
        await self.controller.stop(timeout=max(0.0, deadline - time.monotonic()))
        if self.link is not None:
            await self.link.stop()
        await self.monitor.stop()
        if self._http is not None:
            await self._http.stop()
        report = await self.tasks.stop(max(0.1, deadline - time.monotonic()))
        log.info("stopped background tasks: %s", report.summary())
        if self.media is not None:
            await self.media.aclose()
        await self.redis.aclose()
        await self._ping_redis.aclose()
        log.info("MC %s stopped", self.settings.id)


async def serve(settings: McSettings) -> None:
    """Run until SIGTERM or SIGINT, then drain (see `McApp.drain`)."""
    app = McApp(settings)
    await serve_until_signalled(app.start, app.drain, signalled=app.drain_requested)
