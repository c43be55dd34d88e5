"""`MhApp`: one media handler process — Janus (started or attached), the GC registration and
load reports, MediaHandlerService for MCs, and the health endpoint.

Ready (`/health/ready`) when Janus answers, the gRPC server serves, the MH is registered with
the GC and no background task crashed. While Janus is down the load reports say UNHEALTHY (so
the GC stops placing meetings here and marks the meetings' backups for use) and Register
answers UNAVAILABLE.

SIGHUP re-reads `MH_TRUSTED_MC_KEY_FILES` (the MCs allowed to call) and `MH_SERVICE_KEY_FILE`
(the key its GC tokens are signed with), as the MC and the GC do (README "Key rotation").
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import tempfile
from pathlib import Path

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr

from darktower.auth.client import ServiceTokenProvider
from darktower.auth.errors import KeyFileError
from darktower.auth.grpc_server import service_grpc_server
from darktower.auth.interceptor import ServiceAuthInterceptor
from darktower.auth.keyring import KeyRing, ReloadableSigningKey
from darktower.auth.tokens import GC_AUDIENCE, SCOPE_GC, SCOPE_MH, ServiceType, TokenVerifier
from darktower.common.backoff import RegistrationBackoff
from darktower.mh.gc_link import JanusLoadReporter
from darktower.mh.grpc_service import MediaHandlerServicer
from darktower.mh.janus_admin import JanusAdmin, JanusError, JanusUnavailable
from darktower.mh.janus_config import JanusConfig
from darktower.mh.janus_process import JanusKeeper, find_janus
from darktower.mh.rooms import MediaRooms, RoomLimits
from darktower.mh.settings import MhSettings
from darktower.mhsim.simulator import MhConfig
from darktower.runtime.grpc_health import TASK_NAME as GRPC_HEALTH_TASK
from darktower.runtime.grpc_health import GrpcHealth
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
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

__all__ = ["MhApp", "serve"]

log = logging.getLogger(__name__)

TASKS = ("janus", "gc-link", "health-http", "room-sweep", GRPC_HEALTH_TASK)
# How often host mutes are applied to audio streams published since and tokens not used in time
# are revoked (`MediaRooms.sweep`).
SWEEP_INTERVAL_SECONDS = 1.0


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _advertised(explicit: str, bind: str, port: int, scheme: str) -> str:
    if explicit:
        return explicit if "://" in explicit else f"{scheme}://{explicit}"
    host, _ = parse_bind(bind)
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def _health_app(app: MhApp) -> FastAPI:
    api = FastAPI(title="darktower MH health", docs_url=None, redoc_url=None, openapi_url=None)

    @api.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @api.get("/health/ready")
    async def ready(response: Response) -> dict[str, str]:
        ok, why = app.ready()
        if not ok:
            response.status_code = 503
            return {"status": "not ready", "reason": why}
        return {"status": "ready"}

    @api.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return api


class MhApp:
    def __init__(self, settings: MhSettings) -> None:
        if not settings.trusted_mc_key_files:
            raise StartupError("MH_TRUSTED_MC_KEY_FILES is empty: no MC could call this MH")
        self.settings = settings
        self.tasks = TaskSupervisor(TASKS)
        self.tls = load_service_tls(settings, prefix="MH")
        try:
            self.mc_keys = KeyRing("trusted MC keys", settings.trusted_mc_key_files)
        except KeyFileError as exc:
            raise StartupError(str(exc)) from None
        verifier = TokenVerifier(
            self.mc_keys.keys,
            required_scope=SCOPE_MH,
            allowed_callers={ServiceType.MEETING_CONTROLLER},
            # Only tokens minted for this MH: one minted for another MH is refused.
            audience=settings.id,
            allow_unbound_keys=settings.allow_unbound_keys,
            max_lifetime_seconds=settings.service_token_max_lifetime_seconds,
        )
        if settings.service_key_file is None:
            raise StartupError("MH_SERVICE_KEY_FILE is needed to register with the GC")
        signing = load_own_key(
            settings.service_key_file,
            instance_id=settings.id,
            service_type=ServiceType.MEDIA_HANDLER,
            prefix="MH",
        )
        # Reloaded on SIGHUP (a bad file or a key of another instance keeps the old key).
        self.signing = ReloadableSigningKey(
            settings.service_key_file,
            service_type=ServiceType.MEDIA_HANDLER,
            instance_id=settings.id,
            loaded=signing,
        )
        self.mc_keys.subscribe(verifier.replace_keys)
        self.reloads = ReloadHooks()
        self.reloads.add(self.mc_keys.reload)
        self.reloads.add(self.signing.reload)
        self._gc_tokens = ServiceTokenProvider(
            self.signing.signing_key,
            service_type=ServiceType.MEDIA_HANDLER,
            scope=SCOPE_GC,
            issuer=settings.id,
            subject=settings.id,
            audience=GC_AUDIENCE,
        )
        self._janus_folder: Path | None = None
        self._temp: tempfile.TemporaryDirectory[str] | None = None
        if settings.attached:
            assert settings.janus_admin_secret is not None
            assert settings.janus_room_admin_key is not None
            self.admin = JanusAdmin(
                settings.janus_admin_url,
                settings.janus_admin_secret,
                settings.janus_room_admin_key,
            )
            self.media_url = settings.janus_url
            self.keeper = JanusKeeper(
                None, _unused_config(), Path(), self.admin, on_restart=self._janus_restarted
            )
        else:
            binary = settings.janus_binary or find_janus()
            if not binary:
                raise StartupError(
                    "janus is not installed (apt install janus), and MH_JANUS_ADMIN_URL is "
                    "empty: nothing to attach to"
                )
            if settings.janus_dir is not None:
                folder = settings.janus_dir
            else:
                self._temp = tempfile.TemporaryDirectory(prefix="darktower-mh-")
                folder = Path(self._temp.name)
            self._janus_folder = folder
            ws_host, ws_port = parse_bind(settings.janus_ws_bind)
            if ws_port == 0:
                ws_port = _free_loopback_port()
            admin_port = _free_loopback_port()
            admin_secret = secrets.token_urlsafe(32)
            room_key = secrets.token_urlsafe(32)
            config = JanusConfig(
                server_name=settings.id,
                ws_host=ws_host,
                ws_port=ws_port,
                admin_port=admin_port,
                admin_secret=admin_secret,
                room_admin_key=room_key,
                rtp_port_range=settings.janus_rtp_port_range,
                ice_enforce_list=settings.janus_ice_enforce_list,
                nat_1_1_mapping=settings.janus_nat_1_1_mapping,
                stun_server=settings.janus_stun_server,
            )
            self.admin = JanusAdmin(
                f"http://127.0.0.1:{admin_port}/admin", SecretStr(admin_secret), SecretStr(room_key)
            )
            self.media_url = _advertised(
                settings.janus_url, settings.janus_ws_bind, ws_port, "http"
            )
            self.keeper = JanusKeeper(
                binary, config, folder, self.admin, on_restart=self._janus_restarted
            )
        self.rooms = MediaRooms(
            self.admin, RoomLimits(token_claim_seconds=settings.token_claim_seconds)
        )
        self.grpc_server = service_grpc_server(
            interceptors=[ServiceAuthInterceptor(verifier, service="mh")],
            options=GRPC_LISTEN_OPTIONS,
        )
        pb_grpc.add_MediaHandlerServiceServicer_to_server(
            MediaHandlerServicer(self.rooms, lambda: self.media_url), self.grpc_server
        )
        # grpc.health.v1 follows `carries_media()` (NOT_SERVING while Janus is down): the MCs'
        # media watch (`darktower.mc.media_watch`) moves their meetings' media elsewhere on it.
        # Not `ready()`: an MH between GC registrations still carries its meetings' media.
        service = pb.DESCRIPTOR.services_by_name["MediaHandlerService"]
        self.grpc_health = GrpcHealth(self.carries_media, services=[service.full_name])
        self.grpc_health.add_to(self.grpc_server)
        self.grpc_port = 0
        self.reporter: JanusLoadReporter | None = None
        self._http: HttpServer | None = None

    def _janus_restarted(self) -> None:
        dropped = self.rooms.forget_all()
        log.warning("janus went down: %d rooms and their tokens are gone", dropped)

    def carries_media(self) -> tuple[bool, str]:
        """Whether the MH can carry media now: Janus answers and no background task crashed."""
        crashed = self.tasks.not_ready_reason()
        if crashed is not None:
            return False, crashed
        if not self.keeper.up:
            return False, "janus down"
        return True, ""

    def ready(self) -> tuple[bool, str]:
        ok, why = self.carries_media()
        if ok and (self.reporter is None or not self.reporter.registered):
            return False, "not registered with the GC"
        return ok, why

    @property
    def grpc_endpoint(self) -> str:
        return _advertised(
            self.settings.grpc_advertise, self.settings.grpc_bind, self.grpc_port, self.tls.scheme
        )

    async def start(self) -> None:
        try:
            await self._start_parts()
        except BaseException:
            await self.stop()
            raise
        log.info(
            "MH %s serving gRPC%s on %s, media on %s, health on %s",
            self.settings.id,
            self.tls.log_note,
            self.grpc_endpoint,
            self.media_url,
            self._http.url if self._http is not None else "(off)",
        )

    async def _start_parts(self) -> None:
        self.tasks.spawn("janus", self.keeper.run())
        if not await self.keeper.wait_up(30.0):
            log.warning("janus is not answering yet; the MH stays unready until it does")
        self.grpc_port = add_grpc_port(
            self.grpc_server, self.settings.grpc_bind, "MH gRPC", tls=self.tls
        )
        await self.grpc_health.start(self.tasks)
        await self.grpc_server.start()
        self._http = HttpServer(
            _health_app(self),
            self.settings.health_bind,
            what="MH health HTTP",
            tasks=self.tasks,
            task_name="health-http",
        )
        await self._http.start()
        s = self.settings
        reporter = JanusLoadReporter(
            s.gc_endpoint,
            MhConfig(
                handler_id=s.id,
                region=s.region,
                zone=s.zone,
                webtransport_endpoint=self.media_url,
                grpc_endpoint=self.grpc_endpoint,
                max_streams=s.max_streams,
            ),
            self._gc_tokens,
            backoff=RegistrationBackoff(),
            tls=self.tls,
        )
        reporter.figures = self.admin.load
        reporter.janus_up = lambda: self.keeper.up
        reporter.max_bitrate_bps = s.max_bitrate_mbps * 1e6
        self.reporter = reporter
        self.tasks.spawn("gc-link", reporter.run())
        self.reloads.install()
        self.tasks.spawn("room-sweep", self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_SECONDS)
            if not self.keeper.up:
                continue
            try:
                await self.rooms.sweep()
            except (JanusError, JanusUnavailable) as exc:  # down or restarting: next round
                log.info("rooms not swept this round: %s", exc)

    async def stop(self) -> None:
        self.reloads.uninstall()
        await self.grpc_health.shutdown()
        await self.grpc_server.stop(grace=2.0)
        if self._http is not None:
            await self._http.stop()
        report = await self.tasks.stop(10.0)
        log.info("stopped background tasks: %s", report.summary())
        if self.reporter is not None:
            await self.reporter.aclose()
        await self.admin.aclose()
        if self._temp is not None:
            self._temp.cleanup()


def _unused_config() -> JanusConfig:
    """An attached Janus is configured by its owner: the keeper never writes this one."""
    return JanusConfig(
        server_name="", ws_host="", ws_port=0, admin_port=0, admin_secret="", room_admin_key=""
    )


async def serve(settings: MhSettings) -> None:
    app = MhApp(settings)
    await serve_until_signalled(app.start, app.stop)
