"""Running a GC: `GcApp` wires the parts, `serve()` owns start, wait and a graceful stop.

Start: database (migrated to head), gRPC (GlobalControllerService for MCs,
MediaHandlerRegistryService for MHs, each with its own token rules), the staleness sweeper,
then HTTP (placement with join tokens, read API, join page, dashboard, health, metrics).
SIGHUP reloads what can change without a restart (`reloads`: the API keys of
`GC_API_KEY_FILES`; a bad file keeps the previous keys).
Stop on SIGTERM/SIGINT: HTTP and gRPC stop taking calls, the sweeper stops, channels close,
pending heartbeats and load reports are flushed (written behind, `GC_HEARTBEAT_FLUSH_MS`), the
database closes, and what became of the background tasks is logged; exit 0.

The background loops (sweeper, heartbeat and load report batchers, the HTTP server) run under one
`TaskSupervisor`: one that crashes makes the GC not ready, naming it.
"""

from __future__ import annotations

import logging

import grpc
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from darktower.auth.api_keys import ApiKeyError, ApiKeyRing
from darktower.auth.client import ServiceTokenProvider
from darktower.auth.grpc_server import service_grpc_server
from darktower.auth.keys import ServiceKey, load_trusted_keys
from darktower.auth.tokens import GC_AUDIENCE, SCOPE_MC, ServiceType
from darktower.gc.access import GcAccess
from darktower.gc.drain_api import mount_drain_api
from darktower.gc.grpc_auth import auth_interceptor
from darktower.gc.grpc_services import add_gc_services
from darktower.gc.heartbeats import HeartbeatBatcher, LoadReportBatcher
from darktower.gc.http import ErrorOut, create_app
from darktower.gc.ice import IceServers
from darktower.gc.join import JoinTokenIssuer, PlacementService
from darktower.gc.join.evidence import EvidenceChecks, McProbe
from darktower.gc.jwks_route import mount_jwks
from darktower.gc.last_heard import LastHeard
from darktower.gc.limits import limits_from
from darktower.gc.mc_client import McClient
from darktower.gc.metrics import TASK_CRASHES, TASKS
from darktower.gc.migration import MigrationService
from darktower.gc.ops_http import create_ops_app
from darktower.gc.service_keys import GcServiceKeys
from darktower.gc.settings import GcSettings
from darktower.gc.store import GcStore, StoreError
from darktower.gc.sweeper import StalenessSweeper
from darktower.gc.webhooks import WEBHOOK_TASK, GcWebhooks
from darktower.gc.webhooks_route import mount_webhooks_status
from darktower.runtime.grpc_health import GrpcHealth
from darktower.runtime.grpc_metrics import GrpcServerMetrics
from darktower.runtime.reload import ReloadHooks
from darktower.runtime.serving import (
    GRPC_LISTEN_OPTIONS,
    HttpServer,
    StartupError,
    add_grpc_port,
    parse_bind,
    serve_until_signalled,
)
from darktower.runtime.startup import load_own_key, load_service_tls
from darktower.runtime.supervisor import TaskSupervisor
from darktower.runtime.tls import TlsConfig
from darktower.wire.dark_tower import internal_pb2 as pb

__all__ = ["GcApp", "serve"]

log = logging.getLogger(__name__)

# Longest a stop waits for background tasks its parts have not already stopped.
TASK_STOP_SECONDS = 2.0


def _tls(settings: GcSettings) -> TlsConfig:
    return load_service_tls(settings, prefix="GC")


def _signing_key(settings: GcSettings) -> ServiceKey:
    """The GC's own key; a key bound to another instance (or service) is refused at start."""
    assert settings.service_key_file is not None
    return load_own_key(
        settings.service_key_file,
        instance_id=settings.id,
        service_type=ServiceType.GLOBAL_CONTROLLER,
        prefix="GC",
    )


class GcApp:
    def __init__(self, settings: GcSettings) -> None:
        if settings.service_key_file is None:
            raise StartupError("GC_SERVICE_KEY_FILE is needed to sign calls to MCs")
        if not settings.trusted_mc_key_files:
            raise StartupError("GC_TRUSTED_MC_KEY_FILES is empty: no MC could register")
        self.settings = settings
        self.tasks = TaskSupervisor((*TASKS, WEBHOOK_TASK), crashes=TASK_CRASHES)
        self.tls = _tls(settings)
        self._mc_keys = load_trusted_keys(settings.trusted_mc_key_files)
        self._mh_keys = load_trusted_keys(settings.trusted_mh_key_files)
        # The keys SIGHUP reloads (README "Key rotation"): every token is signed with the
        # current one, and the JWKS publishes it (and a replaced one for a while).
        self.keys = GcServiceKeys(settings, signing=_signing_key(settings))
        private_key = self.keys.signing.signing_key

        def tokens_for(mc_id: str) -> ServiceTokenProvider:
            # `sub` = GC_ID (what a bound GC key vouches for), `aud` = the one MC called.
            return ServiceTokenProvider(
                private_key,
                service_type=ServiceType.GLOBAL_CONTROLLER,
                scope=SCOPE_MC,
                issuer=settings.id,
                subject=settings.id,
                audience=mc_id,
            )

        self._tokens_for = tokens_for
        # The same key signs clients' meeting join tokens, which the MCs check against the
        # GC public keys they already trust (MC_TRUSTED_GC_KEY_FILES).
        self.join_tokens = JoinTokenIssuer(
            private_key, issuer=settings.id, ttl_seconds=settings.join_token_ttl_seconds
        )
        try:
            api_keys = ApiKeyRing(settings.api_key_files)
        except ApiKeyError as exc:
            raise StartupError(f"GC_API_KEY_FILES: {exc}") from None
        self.access = GcAccess(api_keys, allow_guests=settings.allow_guests)
        self.reloads = ReloadHooks()
        self.reloads.add(api_keys.reload)
        self.reloads.add(self.keys.reload)
        self.store: GcStore | None = None
        self.heartbeats: HeartbeatBatcher | None = None
        self.load_reports: LoadReportBatcher | None = None
        # Receipt times of beats and load reports: staleness judged on when they arrived.
        self.last_heard = LastHeard()
        self.grpc_server: grpc.aio.Server | None = None
        self.grpc_health: GrpcHealth | None = None
        self.grpc_port = 0
        self.http_port = 0
        self.sweeper: StalenessSweeper | None = None
        self.mc_client: McClient | None = None
        self.placement: PlacementService | None = None
        self._http: HttpServer | None = None
        self._health_http: HttpServer | None = None  # GC_HEALTH_BIND, when set
        self.health_port = 0
        # Webhook delivery (docs/webhooks.md); None while GC_WEBHOOK_URLS is empty.
        self.webhooks = GcWebhooks.from_settings(settings)

    async def ready(self) -> tuple[bool, str]:
        """(ready, reason): not ready after a background task crashed, while starting, when
        the database cannot be reached ("database unreachable"), or when the check itself fails
        unexpectedly ("readiness check failed", logged with its traceback)."""
        crashed = self.tasks.not_ready_reason()
        if crashed is not None:
            return False, crashed
        if self.store is None:
            return False, "starting"
        try:
            async with self.store.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (DBAPIError, PoolTimeout, OSError) as exc:
            # OSError includes TimeoutError. The type only: a driver's text may name the host.
            log.warning("readiness: database unreachable (%s)", type(exc).__name__)
            return False, "database unreachable"
        except Exception:
            log.exception("readiness check failed")
            return False, "readiness check failed"
        return True, ""

    async def start(self) -> None:
        """Open the database, then start every part. A part that cannot start (a port taken)
        raises `StartupError` after the parts already started are stopped, so nothing is left
        listening."""
        try:
            await self._start_parts()
        except BaseException:
            await self.stop()
            raise

    async def _start_parts(self) -> None:
        s = self.settings
        try:
            self.store = await GcStore.open(s.database_url.get_secret_value())
        except StoreError as exc:
            raise StartupError(f"cannot open the database: {exc}") from None
        if s.heartbeat_flush_ms > 0:
            self.heartbeats = HeartbeatBatcher(
                self.store,
                interval_s=s.heartbeat_flush_ms / 1000,
                max_pending=s.heartbeat_flush_max_pending,
                last_heard=self.last_heard,
            )
            await self.heartbeats.start(self.tasks)
            self.load_reports = LoadReportBatcher(
                self.store,
                interval_s=s.heartbeat_flush_ms / 1000,
                max_pending=s.heartbeat_flush_max_pending,
                last_heard=self.last_heard,
            )
            await self.load_reports.start(self.tasks)
        interceptor = auth_interceptor(
            self._mc_keys,
            self._mh_keys,
            audience=(GC_AUDIENCE, s.id),
            allow_unbound_keys=s.allow_unbound_keys,
            max_lifetime_seconds=s.service_token_max_lifetime_seconds,
        )
        self.keys.follow(interceptor.verifiers)
        gc_services = [
            pb.DESCRIPTOR.services_by_name[name]
            for name in ("GlobalControllerService", "MediaHandlerRegistryService")
        ]
        # grpc.health.v1 follows `ready()` (the database reachable); NOT_SERVING once stopping.
        self.grpc_health = GrpcHealth(
            self.ready,
            services=[service.full_name for service in gc_services],
            reflection_on=s.grpc_reflection,
        )
        self.grpc_server = service_grpc_server(
            interceptors=[
                GrpcServerMetrics([*gc_services, *self.grpc_health.descriptors]),
                interceptor,
            ],
            options=GRPC_LISTEN_OPTIONS,
        )
        self.grpc_health.add_to(self.grpc_server)
        mc_servicer = add_gc_services(
            self.grpc_server,
            self.store,
            region=s.region,
            fast_heartbeat_ms=s.fast_heartbeat_ms,
            comprehensive_heartbeat_ms=s.comprehensive_heartbeat_ms,
            load_report_ms=s.mh_load_report_ms,
            heartbeats=self.heartbeats,
            last_heard=self.last_heard,
            load_reports=self.load_reports,
        )
        self.grpc_port = add_grpc_port(self.grpc_server, s.grpc_bind, "GC gRPC", tls=self.tls)
        await self.grpc_health.start(self.tasks)
        await self.grpc_server.start()
        self.sweeper = StalenessSweeper(
            self.store,
            staleness_s=s.staleness_seconds,
            interval_s=s.sweep_interval_seconds,
            retention_s=s.assignment_retention_hours * 3600,
            heartbeats=self.heartbeats,
            last_heard=self.last_heard,
            load_reports=self.load_reports,
        )
        self.sweeper.start(self.tasks)
        self.mc_client = McClient(
            self._tokens_for, gc_id=s.id, timeout=s.mc_call_timeout_seconds, tls=self.tls
        )
        self.placement = PlacementService(
            self.store,
            self.mc_client,
            join_tokens=self.join_tokens,
            gc_id=s.id,
            region=s.region,
            staleness_s=s.staleness_seconds,
            attempts=s.placement_attempts,
            claim_stale_s=s.claim_stale_seconds,
            last_heard=self.last_heard,
            # A client's `unreachable_mc_id`: checked by this GC itself, never trusted alone.
            evidence=EvidenceChecks(
                McProbe(self._tokens_for, gc_id=s.id, tls=self.tls), self._mark_down
            ),
            ice_servers=_ice_servers(s),
        )
        heartbeats = self.heartbeats
        mc_servicer.migrations = MigrationService(
            self.store,
            self.placement,
            self.join_tokens,
            region=s.region,
            flush_heartbeats=None if heartbeats is None else heartbeats.flush,
        )
        app = create_app(
            self.store,
            self.placement,
            region=s.region,
            is_ready=self.ready,
            access=self.access,
            limits=limits_from(s),
            ops_routes=not s.health_bind,
        )
        mount_jwks(app, self.keys.jwks_keys)
        # An operator's drain (README "Rolling upgrades"): the GC asks that MC to drain.
        mount_drain_api(
            app,
            store=self.store,
            mc_client=self.mc_client,
            access=self.access,
            error_model=ErrorOut,
        )
        mount_webhooks_status(app, self.webhooks, self.access)
        self._http = HttpServer(
            app,
            s.http_bind,
            what="GC HTTP",
            tasks=self.tasks,
            task_name="gc-http",
            tls=self.tls if s.http_tls else None,
        )
        self.http_port = await self._http.start()
        if s.health_bind:
            self._health_http = HttpServer(
                create_ops_app(self.ready, limits_from(s)),
                s.health_bind,
                what="GC health HTTP",
                tasks=self.tasks,
                task_name="gc-health-http",
            )
            self.health_port = await self._health_http.start()
        if self.webhooks is not None:
            self.webhooks.start(self.tasks)
        self.reloads.install()
        log.info(
            "GC %s serving gRPC%s on %s:%d and HTTP on %s (region %s)",
            s.id,
            self.tls.log_note,
            parse_bind(s.grpc_bind)[0],
            self.grpc_port,
            self._http.url,
            s.region,
        )

    async def _mark_down(self, mc_id: str) -> bool:
        """An MC this GC found down on a client's evidence: pending heartbeats are written
        first (a beat from its last moments must not land after the mark and undo it), then
        it is marked UNHEALTHY. True if it was not already."""
        assert self.store is not None
        if self.heartbeats is not None:
            await self.heartbeats.flush()
        return await self.store.mark_controller_unhealthy(mc_id)

    async def stop(self) -> None:
        if self.grpc_health is not None:
            await self.grpc_health.shutdown()
        self.reloads.uninstall()
        if self._http is not None:
            await self._http.stop()
        if self._health_http is not None:
            await self._health_http.stop()
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace=2.0)
        if self.sweeper is not None:
            await self.sweeper.stop()
        if self.mc_client is not None:
            await self.mc_client.aclose()
        if self.webhooks is not None:
            await self.webhooks.stop()
        if self.heartbeats is not None:
            await self.heartbeats.stop()
        if self.load_reports is not None:
            await self.load_reports.stop()
        if self.store is not None:
            await self.store.aclose()
        report = await self.tasks.stop(TASK_STOP_SECONDS)
        log.info("stopped background tasks: %s", report.summary())
        log.info("GC %s stopped", self.settings.id)


async def serve(settings: GcSettings) -> None:
    """Run until SIGTERM or SIGINT, then stop."""
    app = GcApp(settings)
    await serve_until_signalled(app.start, app.stop)


def _ice_servers(s: GcSettings) -> IceServers | None:
    """What join answers hand the browser for ICE (`GC_ICE_SERVERS`); None when unset."""
    if not s.ice_servers:
        return None
    secret = s.turn_secret.get_secret_value().encode() if s.turn_secret is not None else None
    return IceServers(
        tuple(s.ice_servers), secret=secret, ttl_seconds=s.turn_credential_ttl_seconds
    )
