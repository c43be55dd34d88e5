"""The local fleet: a real Redis (embedded unless a URL is given), a GC (SQLite unless a database
URL is given), N MCs registered with it and M MHs in two zones, with fresh keys. The MHs are
simulated (`darktower mh-sim`, signaling only) unless `real_mhs` is set: then each is a
`darktower mh` that starts its own Janus (`janus` must be installed), whose client WebSocket
listens on 127.0.0.1 and whose private configuration lives with the fleet's keys.

Every gRPC hop (MC↔GC, MH→GC) is TLS by default: a CA of the fleet's own and one certificate
per service (for 127.0.0.1 and localhost) are made in `<keys>/tls`, and every service trusts
that CA. The GC's HTTP API and the MCs' client WebSockets stay plain HTTP/WS: the dashboard
and join page are opened by browsers that do not trust a private CA (`https=True` serves them
as HTTPS/WSS too, for clients given the CA). `tls=False` (`darktower dev --no-tls`) runs
everything plaintext.

Every service is a child process of this one (a `ManagedProcess`), each in its own process
group, writing to `<workdir>/<name>.log`; `restart()` starts a dead one again with the same id,
ports and log; `stop()` sends SIGTERM to all, waits, then SIGKILLs what is left, so nothing
outlives the fleet. On Linux every child, the embedded Redis included, also dies with this
process if it is killed without a chance to stop them.
Deciding what to do when a child dies is the supervisor's job (`darktower.dev.supervisor`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import ssl
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from darktower.auth.access_tokens import mint_access_token
from darktower.auth.api_keys import generate_api_key, load_api_key_file, write_api_key_file
from darktower.auth.certs import generate_certs, parse_hosts
from darktower.auth.fleet_keys import generate_fleet_keys
from darktower.embedded.redis import EmbeddedRedis, free_port
from darktower.runtime.processes import ManagedProcess, ProcessError, stop_all

__all__ = ["ZONES", "Fleet", "FleetPorts", "PortInUse", "Service"]

STOP_GRACE_SECONDS = 15.0
# Longest `start` waits, after every process is ready, for the GC to report all healthy.
HEALTHY_TIMEOUT_SECONDS = 30.0

ZONES = ("zone-a", "zone-b")


class PortInUse(RuntimeError):
    """A port the fleet wants is taken (the message names it)."""


@dataclass
class Service:
    """One child process and how to start it again."""

    kind: str  # "gc" | "mc" | "mh"
    name: str
    process: ManagedProcess
    args: list[str]  # after `python -m darktower`
    env: dict[str, str]  # on top of ours, without MC_*/GC_*/MH_*
    log: Path
    grpc: str = ""
    http: str = ""
    ready_url: str = ""
    ports: dict[str, int] = field(default_factory=dict)  # label -> port, all on 127.0.0.1
    zone: str = ""
    started_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class FleetPorts:
    """Fixed ports (docs/reference.md defaults) or, with `any_free`, whatever is free."""

    gc_grpc: int = 50051
    gc_http: int = 8080
    mc_grpc_base: int = 50052
    mc_health_base: int = 8081
    mc_client_base: int = 9081  # client signaling (WebSocket); clear of the health ports
    # Real MHs (`darktower mh`) only; clear of the MCs' ports for up to 50 MCs.
    mh_grpc_base: int = 50201
    mh_health_base: int = 8281
    janus_ws_base: int = 8188  # Janus's own default WebSocket port, then the next ones
    any_free: bool = False


def _claim(port: int, what: str) -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise PortInUse(
                f"port {port} ({what}) is in use; stop what holds it or use --any-port"
            ) from None
    return port


@dataclass
class Fleet:
    """The fleet's processes. With `workdir` given, logs and the GC database stay there after
    `stop()` (the keys are removed); without, a temporary directory is used and removed."""

    mcs: int = 3
    mhs: int = 4
    redis_url: str | None = None
    db_url: str | None = None
    ports: FleetPorts = field(default_factory=FleetPorts)
    services: list[Service] = field(default_factory=list)
    redis: EmbeddedRedis | None = None
    workdir: Path | None = None
    tls: bool = True
    https: bool = False  # the GC's HTTP API and the client WebSockets too (needs `tls`)
    # Webhooks (docs/webhooks.md): off unless URLs are given; signed with the dev API key.
    webhook_urls: tuple[str, ...] = ()
    # `darktower mh` with Janus instead of `darktower mh-sim` (the caller checks `janus`).
    real_mhs: bool = False

    def __post_init__(self) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="darktower-dev-")
            self.workdir = Path(self._tmp.name)
        self.logs: Path = self.workdir
        self.key_dir = self.logs / "keys"
        self.tls_dir = self.key_dir / "tls"

    @property
    def api_key_file(self) -> Path:
        """The dev fleet's API key ({"key_id", "secret"}, 0600), removed with the keys."""
        return self.key_dir / "api-key.json"

    @property
    def grpc_scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def http_scheme(self) -> str:
        return "https" if self.tls and self.https else "http"

    @property
    def ca_file(self) -> Path | None:
        """The fleet's CA certificate (None with TLS off)."""
        return self.tls_dir / "ca.crt" if self.tls else None

    def _verify(self) -> ssl.SSLContext | bool:
        """What the fleet's own readiness checks trust: its CA when it has one."""
        if self.ca_file is None:
            return True
        return ssl.create_default_context(cafile=self.ca_file)

    def _tls_env(self, name: str, prefix: str) -> dict[str, str]:
        """`<prefix>_TLS_*` for service `name`: its certificate (made here) and the fleet's CA."""
        if not self.tls:
            return {}
        issued = generate_certs(self.tls_dir, name, parse_hosts("127.0.0.1,localhost"))
        return {
            f"{prefix}_TLS_CERT_FILE": str(issued.cert),
            f"{prefix}_TLS_KEY_FILE": str(issued.key),
            f"{prefix}_TLS_CA_FILE": str(issued.ca_cert),
        }

    def _tls_args(self, name: str) -> list[str]:
        """The same for `darktower mh-sim`, as options."""
        env = self._tls_env(name, "MH")
        if not env:
            return []
        return [
            "--tls-cert", env["MH_TLS_CERT_FILE"],
            "--tls-key", env["MH_TLS_KEY_FILE"],
            "--tls-ca", env["MH_TLS_CA_FILE"],
        ]  # fmt: skip

    def _webhook_env(self) -> dict[str, str]:
        """The GC's webhook settings: none unless asked (`--webhook-url`); then the URLs,
        the dev API key to sign with and the fleet's Redis, where the MCs record events."""
        if not self.webhook_urls:
            return {}
        return {
            "GC_WEBHOOK_URLS": ",".join(self.webhook_urls),
            "GC_WEBHOOK_KEY_FILE": str(self.api_key_file),
            "GC_EVENTS_REDIS_URL": self.effective_redis_url,
            "GC_WEBHOOK_RETRY_CAP_SECONDS": "30",  # a receiver started late is caught up soon
        }

    def _port(self, fixed: int, what: str) -> int:
        return free_port() if self.ports.any_free else _claim(fixed, what)

    @property
    def gc(self) -> Service:
        return next(s for s in self.services if s.kind == "gc")

    @property
    def gc_url(self) -> str:
        return self.gc.http

    @property
    def effective_redis_url(self) -> str:
        if self.redis_url:
            return self.redis_url
        assert self.redis is not None
        return self.redis.url

    def processes(self) -> dict[str, int]:
        """Name -> pid of every process this fleet started (the embedded Redis as "redis")."""
        pids = {"redis": self.redis.pid} if self.redis and self.redis.pid else {}
        return pids | {s.name: s.process.pid for s in self.services}

    def start(self) -> None:
        """Start everything and wait until the GC and every MC are ready, and the GC reports
        every MC and MH healthy (so that a join right after this returns can be placed).

        Raises PortInUse (nothing started) or RuntimeError (a process failed, or not all
        healthy in time; `stop()` it)."""
        # Check every fixed port before starting anything, so a conflict leaves nothing behind.
        gc_http = self._port(self.ports.gc_http, "GC HTTP")
        gc_grpc = self._port(self.ports.gc_grpc, "GC gRPC")
        mc_ports = [
            (
                self._port(self.ports.mc_grpc_base + i, f"mc-{i + 1} gRPC"),
                self._port(self.ports.mc_health_base + i, f"mc-{i + 1} health"),
                self._port(self.ports.mc_client_base + i, f"mc-{i + 1} client"),
            )
            for i in range(self.mcs)
        ]
        mh_ports = [
            (
                self._port(self.ports.mh_grpc_base + i, f"mh-{i + 1} gRPC"),
                self._port(self.ports.mh_health_base + i, f"mh-{i + 1} health"),
                self._port(self.ports.janus_ws_base + i, f"mh-{i + 1} Janus WebSocket"),
            )
            for i in range(self.mhs if self.real_mhs else 0)
        ]
        # One binding secret for the whole fleet: a client's session survives its meeting
        # moving to another MC. Generated here, handed over in the environment, never printed.
        binding_secret = secrets.token_urlsafe(32)
        # One key per instance, each bound to its id; peers trust the directories. No shared
        # key: an MC can act only as itself at the GC, and the GC's tokens name one MC each.
        keys = generate_fleet_keys(
            self.key_dir,
            mcs=[f"mc-{i + 1}" for i in range(self.mcs)],
            mhs=[f"mh-{i + 1}" for i in range(self.mhs)],
        )
        # The dev API key: `darktower join`, `client` and `status` find it through the fleet's
        # state record and mint their own access tokens with it; guests are on for the page.
        write_api_key_file(self.api_key_file, generate_api_key(), force=True)
        if not self.redis_url:
            self.redis = EmbeddedRedis().start()
        self._launch(
            "gc", "gc-1", ["gc"], {
                "GC_ID": "gc-1",
                "GC_GRPC_BIND": f"127.0.0.1:{gc_grpc}",
                "GC_HTTP_BIND": f"127.0.0.1:{gc_http}",
                "GC_DATABASE_URL": self.db_url or f"sqlite+aiosqlite:///{self.logs / 'gc.db'}",
                "GC_SERVICE_KEY_FILE": str(keys.key("gc", "gc-1")),
                "GC_TRUSTED_MC_KEY_FILES": str(keys.trusted("mc")),
                # No directory without MHs: trusting an empty one is refused.
                "GC_TRUSTED_MH_KEY_FILES": str(keys.trusted("mh")) if self.mhs else "",
                "GC_FAST_HEARTBEAT_MS": "2000",
                "GC_COMPREHENSIVE_HEARTBEAT_MS": "4000",
                "GC_MH_LOAD_REPORT_MS": "2000",
                "GC_STALENESS_SECONDS": "6",
                "GC_SWEEP_INTERVAL_SECONDS": "1",
                "GC_HTTP_TLS": str(self.https).lower(),
                "GC_API_KEY_FILES": str(self.api_key_file),
                **self._webhook_env(),
                "GC_ALLOW_GUESTS": "true",
                # grpcurl list/describe work against the dev fleet (a token still needed).
                "GC_GRPC_REFLECTION": "true",
                **self._tls_env("gc-1", "GC"),
            },
            grpc=f"{self.grpc_scheme}://127.0.0.1:{gc_grpc}",
            http=f"{self.http_scheme}://127.0.0.1:{gc_http}",
            ready_url=f"{self.http_scheme}://127.0.0.1:{gc_http}/health/ready",
            ports={"HTTP": gc_http, "gRPC": gc_grpc},
        )  # fmt: skip
        self._wait_ready(self.gc)
        for i, (grpc_port, health_port, client_port) in enumerate(mc_ports):
            name = f"mc-{i + 1}"
            env = {
                "MC_ID": name,
                "MC_GRPC_BIND": f"127.0.0.1:{grpc_port}",
                "MC_HEALTH_BIND": f"127.0.0.1:{health_port}",
                "MC_CLIENT_BIND": f"127.0.0.1:{client_port}",
                "MC_BINDING_TOKEN_SECRET": binding_secret,
                "MC_REDIS_URL": self.effective_redis_url,
                "MC_GC_ENDPOINT": self.gc.grpc,
                "MC_SERVICE_KEY_FILE": str(keys.key("mc", name)),
                "MC_TRUSTED_GC_KEY_FILES": str(keys.trusted("gc")),
                "MC_DRAIN_SECONDS": "5",
                "MC_GRPC_REFLECTION": "true",
                "MC_CLIENT_TLS": str(self.https).lower(),
                **self._tls_env(name, "MC"),
            }
            self._launch(
                "mc", name, ["mc"], env,
                grpc=f"{self.grpc_scheme}://127.0.0.1:{grpc_port}",
                http=f"http://127.0.0.1:{health_port}",
                ready_url=f"http://127.0.0.1:{health_port}/health/ready",
                ports={"gRPC": grpc_port, "health": health_port, "client WS": client_port},
            )  # fmt: skip
        for i in range(self.mhs):
            name = f"mh-{i + 1}"
            zone = ZONES[i % len(ZONES)]
            key = str(keys.key("mh", name))
            if self.real_mhs:
                self._launch_mh(name, zone, key, str(keys.trusted("mc")), *mh_ports[i])
                continue
            args = ["mh-sim", "--key", key, "--gc", self.gc.grpc, "--id", name]
            args += self._tls_args(name)
            self._launch("mh", name, [*args, "--zone", zone], {}, zone=zone)
        for service in self.services:
            if service.ready_url:
                self._wait_ready(service)
        self.wait_healthy()

    def _launch_mh(
        self, name: str, zone: str, key: str, mc_keys: str, grpc: int, health: int, ws: int
    ) -> None:
        """A `darktower mh` that starts its own Janus: the clients' WebSocket on 127.0.0.1
        (`ws`), its configuration (fresh secrets) in a private directory beside the keys,
        removed with them."""
        env = {
            "MH_ID": name,
            "MH_ZONE": zone,
            "MH_GC_ENDPOINT": self.gc.grpc,
            "MH_SERVICE_KEY_FILE": key,
            "MH_TRUSTED_MC_KEY_FILES": mc_keys,
            "MH_GRPC_BIND": f"127.0.0.1:{grpc}",
            "MH_HEALTH_BIND": f"127.0.0.1:{health}",
            "MH_JANUS_WS_BIND": f"127.0.0.1:{ws}",
            "MH_JANUS_DIR": str(self.key_dir / "janus" / name),
            **self._tls_env(name, "MH"),
        }
        self._launch(
            "mh", name, ["mh"], env,
            grpc=f"{self.grpc_scheme}://127.0.0.1:{grpc}",
            http=f"http://127.0.0.1:{health}",
            ready_url=f"http://127.0.0.1:{health}/health/ready",
            ports={"gRPC": grpc, "health": health, "Janus WS": ws},
            zone=zone,
        )  # fmt: skip

    def wait_healthy(self, timeout: float = HEALTHY_TIMEOUT_SECONDS) -> None:
        """Wait until the GC reports every MC and MH of the fleet HEALTHY. An MC is ready once
        registered, but the GC places only on healthy ones, and an MC stays PENDING until its
        first heartbeat is written (behind, within the GC's flush interval): without this
        wait, a join right after the start could be answered 503 `none_healthy`.

        Reads `/v1/controllers` and `/v1/media-handlers` with an admin access token minted
        from the fleet's API key. RuntimeError naming what is not healthy (and how it is) after
        `timeout` seconds, or at once if a process of the fleet exited."""
        token = mint_access_token(
            load_api_key_file(self.api_key_file),
            identity="darktower-dev",
            meeting_id=None,
            admin=True,
            ttl_seconds=max(60, int(timeout) + 60),
        )
        wanted = {s.name: s.kind for s in self.services if s.kind in ("mc", "mh")}
        missing: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        with httpx.Client(
            base_url=self.gc.http,
            headers={"Authorization": f"Bearer {token}"},
            verify=self._verify(),
            timeout=5.0,
        ) as client:
            while True:
                for service in self.exited():
                    raise RuntimeError(
                        f"{service.name} exited before the fleet was healthy; see {service.log}"
                    )
                missing = {name: "not registered" for name in wanted}
                try:
                    for path in ("/v1/controllers", "/v1/media-handlers"):
                        response = client.get(path)
                        response.raise_for_status()
                        for entry in response.json():
                            name = str(entry.get("id"))
                            if name in missing:
                                health = str(entry.get("health"))
                                if health == "healthy":
                                    del missing[name]
                                else:
                                    missing[name] = health
                except (httpx.HTTPError, ValueError) as exc:
                    missing["gc-1"] = f"registry unreadable ({type(exc).__name__})"
                if not missing:
                    return
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        what = ", ".join(f"{name} {how}" for name, how in sorted(missing.items()))
        raise RuntimeError(
            f"the GC does not report the whole fleet healthy within {timeout:g}s: {what}; "
            f"see the logs in {self.logs}"
        )

    def _launch(
        self,
        kind: str,
        name: str,
        args: list[str],
        env: dict[str, str],
        *,
        grpc: str = "",
        http: str = "",
        ready_url: str = "",
        ports: dict[str, int] | None = None,
        zone: str = "",
    ) -> Service:
        log = self.logs / f"{name}.log"
        process = self._popen(name, args, env, log)
        service = Service(
            kind, name, process, args, env, log, grpc, http, ready_url, ports or {}, zone
        )
        self.services.append(service)
        return service

    def _popen(self, name: str, args: list[str], env: dict[str, str], log: Path) -> ManagedProcess:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MC_", "GC_", "MH_"))}
        full_env.update(env)
        return ManagedProcess.start(
            [sys.executable, "-m", "darktower", *args], log_path=log, env=full_env, name=name
        )

    def restart(self, service: Service, note: str) -> None:
        """Start a dead `service` again: same id, ports, environment and log (`note` is written
        to the log first, so the log tells the two lives apart)."""
        if service.process.poll() is None:
            raise RuntimeError(f"{service.name} is still running")
        with service.log.open("a") as log:
            log.write(f"--- darktower dev: {note} ---\n")
        service.process = self._popen(service.name, service.args, service.env, service.log)
        service.started_at = time.monotonic()

    def _wait_ready(self, service: Service, timeout: float = 30.0) -> None:
        try:
            service.process.wait_ready_url(
                service.ready_url, timeout=timeout, verify=self._verify()
            )
        except ProcessError as exc:
            raise RuntimeError(f"{exc.args[0].partition('; log ')[0]}; see {service.log}") from exc

    def exited(self) -> list[Service]:
        return [s for s in self.services if s.process.poll() is not None]

    def stop(self) -> None:
        """SIGTERM every child (MCs drain), wait, SIGKILL the rest, stop Redis; remove the keys
        (and the temporary directory, if the fleet made one)."""
        stop_all([s.process for s in reversed(self.services)], grace=STOP_GRACE_SECONDS)
        if self.redis is not None:
            self.redis.stop()
        shutil.rmtree(self.key_dir, ignore_errors=True)
        if self._tmp is not None:
            self._tmp.cleanup()
