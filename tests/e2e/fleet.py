"""Real processes for the end-to-end tests: a GC, MCs and simulated MHs on loopback.

Every process is a `ManagedProcess` (`darktower.runtime.processes`): a session of its own (a
SIGKILL of its process group takes anything it started), stderr (and stdout) in a file under
the test's `tmp_path`, killed by `Fleet.close()`, which the `fleet` fixture calls in a
`finally`: no process outlives its test, failed or not. On Linux each is also bound to the
thread that started it (`PR_SET_PDEATHSIG`), so even a pytest killed with SIGKILL leaves no
orphan. Every wait is bounded and names what it waited for (`tests.support.waiting`).

* `darktower gc` and `darktower mc` run through the real entry point (`python -m darktower`).
* MHs run either through `darktower mh-sim` (one process per MH), or — cheaper, since every
  `darktower` process pays ~3 s of imports on a small machine — several `MhSimulator`s in one
  light process (`start_mh_group`); both register and report over real gRPC with MH tokens.

All services live in region `REGION`; GC timings are shortened (`FAST_GC_ENV`) so that
staleness and failover take seconds.

Every gRPC hop (MC↔GC, MH→GC) is TLS by default, as in `darktower dev`: the fleet has a CA of
its own in `<tmp_path>/tls` and each process a certificate from it for 127.0.0.1 and localhost
(`darktower.auth.certs`), its `*_TLS_*` files set and every gRPC endpoint an `https://` URL.
The GC's HTTP API, the MC's client WebSocket and its health server stay plain HTTP (as in
`darktower dev`). A test talking gRPC itself uses `grpc_channel(endpoint, fleet.ca_file)` (or
`GcProc.channel()`, `McProc.channel()`); `Fleet(..., tls=False)` runs everything plaintext.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url

from darktower.auth.certs import generate_certs, parse_hosts
from darktower.auth.fleet_keys import FleetKeys, generate_fleet_keys
from darktower.embedded.redis import free_port
from darktower.gc.store import create_engine, sqlite_url
from darktower.runtime.grpc_channels import grpc_target
from darktower.runtime.processes import ManagedProcess, parent_death_hook
from tests.support.databases import DATABASE_URL_ENV
from tests.support.metrics import metric
from tests.support.processes import clean_env as _clean_env
from tests.support.waiting import wait_until

__all__ = [
    "DATABASE_URL_ENV",
    "FAST_GC_ENV",
    "REGION",
    "STALENESS_S",
    "SWEEP_S",
    "USUAL_MCS",
    "USUAL_MHS",
    "Fleet",
    "GcProc",
    "McProc",
    "Proc",
    "aio_grpc_channel",
    "fresh_database",
    "grpc_channel",
    "metric",
    "postgres_base_url",
    "run_cli",
    "sql_rows",
    "wait_until",
]

REGION = "e2e"
STALENESS_S = 2.0
SWEEP_S = 0.3
FAST_GC_ENV = {
    "GC_REGION": REGION,
    "GC_STALENESS_SECONDS": str(STALENESS_S),
    "GC_SWEEP_INTERVAL_SECONDS": str(SWEEP_S),
    "GC_FAST_HEARTBEAT_MS": "300",
    "GC_COMPREHENSIVE_HEARTBEAT_MS": "1000",
    "GC_MH_LOAD_REPORT_MS": "500",
    "GC_MC_CALL_TIMEOUT_SECONDS": "5",
    # These tests join as guests (no access token); tests/e2e/test_access_e2e.py runs the
    # production access model (guests off, API keys).
    "GC_ALLOW_GUESTS": "true",
}
FAST_MC_ENV = {
    "MC_REGION": REGION,
    "MC_DRAIN_SECONDS": "2",
    "MC_REDIS_CHECK_SECONDS": "0.2",
    "MC_REGISTRATION_BACKOFF_BASE": "0.1",
    "MC_REGISTRATION_BACKOFF_CAP": "0.5",
    # Shared by every MC of a fleet, so a client session survives a failover; tests only.
    "MC_BINDING_TOKEN_SECRET": "e2e-binding-secret-0123456789abcdef",
}
# Ids whose keys every GC (MC) of a fleet trusts without `Fleet.add_keys`.
USUAL_GCS = ("gc-1", "gc-2")
USUAL_MCS = ("mc-1", "mc-2", "mc-3")
USUAL_MHS = ("mh-1", "mh-2")
# Two CPUs and several interpreters importing at once: starting is the slow part.
START_TIMEOUT_S = 40.0
HTTP_TIMEOUT_S = 30.0

# Several simulated MHs in one process: argv = key directory (<id>.key each), GC endpoint,
# region, TLS certificate, key and CA files (each "" for none), id=zone...
_MH_GROUP_SCRIPT = """
import asyncio, logging, sys
from pathlib import Path
from darktower.auth.client import ServiceTokenProvider
from darktower.auth.keys import load_private_key
from darktower.auth.tokens import GC_AUDIENCE, SERVICE_PROFILES
from darktower.common.backoff import RegistrationBackoff
from darktower.mhsim.simulator import MhConfig, MhSimulator
from darktower.runtime.tls import load_tls

async def main(key, gc, region, tls_files, specs):
    tls = load_tls(*(Path(f) if f else None for f in tls_files), prefix="--tls")
    service_type, scope = SERVICE_PROFILES["mh"]
    sims = []
    for spec in specs:
        handler_id, zone = spec.split("=")
        tokens = ServiceTokenProvider(
            load_private_key(Path(key) / f"{handler_id}.key"),
            service_type=service_type,
            scope=scope,
            issuer=handler_id,
            audience=GC_AUDIENCE,
        )
        config = MhConfig(
            handler_id=handler_id,
            region=region,
            zone=zone,
            webtransport_endpoint=f"https://{handler_id}.{zone}.e2e:4433",
            grpc_endpoint=f"{tls.scheme}://{handler_id}.{zone}.e2e:50053",
        )
        backoff = RegistrationBackoff(base=0.1, cap=0.5)
        sims.append(MhSimulator(gc, config, tokens, backoff=backoff, tls=tls))
    await asyncio.gather(*(sim.run() for sim in sims))

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:7], sys.argv[7:]))
"""


def _credentials(ca_file: Path | None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(ca_file.read_bytes() if ca_file else None)


def grpc_channel(endpoint: str, ca_file: Path | None) -> grpc.Channel:
    """A channel to `endpoint` for a test: TLS verified against `ca_file` for `https://`,
    plaintext for `http://` (no client certificate: the fleet does not require one)."""
    target, secure = grpc_target(endpoint)
    if secure:
        return grpc.secure_channel(target, _credentials(ca_file))
    return grpc.insecure_channel(target)


def aio_grpc_channel(endpoint: str, ca_file: Path | None) -> grpc.aio.Channel:
    """The same as `grpc_channel`, for asyncio."""
    target, secure = grpc_target(endpoint)
    if secure:
        return grpc.aio.secure_channel(target, _credentials(ca_file))
    return grpc.aio.insecure_channel(target)


def darktower_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "darktower", *args]


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run `darktower ARGS` to completion (own session, wide terminal for tables)."""
    return subprocess.run(
        darktower_command(*args),
        env=_clean_env({"COLUMNS": "200"}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
        preexec_fn=parent_death_hook(),  # only a prctl syscall between fork and exec
        check=False,
    )


def sql_rows(url: str, statement: str, params: Mapping[str, Any] | None = None) -> list[Any]:
    """Run one SQL statement on `url` (the GC store's URL form) and return its rows.

    Runs its own event loop in a worker thread, so it works from sync and async tests alike.
    """

    async def run() -> list[Any]:
        engine = create_engine(url)
        try:
            async with engine.begin() as connection:
                result = await connection.execute(text(statement), dict(params or {}))
                return list(result.fetchall()) if result.returns_rows else []
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, run()).result(timeout=30)


def postgres_base_url() -> str | None:
    """The PostgreSQL the tests may use (`DARKTOWER_TEST_DATABASE_URL`), None for SQLite."""
    return os.environ.get(DATABASE_URL_ENV) or None


@contextlib.contextmanager
def fresh_database(tmp_dir: Path) -> Iterator[str]:
    """The URL of an empty database for one fleet: a SQLite file in `tmp_dir`, or a schema
    `e2e_<hex>` of the test PostgreSQL (named in the URL's `search_path`), dropped on exit."""
    base = postgres_base_url()
    if base is None:
        yield sqlite_url(tmp_dir / "gc.sqlite3")
        return
    schema = f"e2e_{secrets.token_hex(6)}"
    sql_rows(base, f'CREATE SCHEMA "{schema}"')
    try:
        url = make_url(base).update_query_dict({"search_path": schema})
        yield url.render_as_string(hide_password=False)
    finally:
        sql_rows(base, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@dataclass
class Proc:
    """One started process, named for the failure reports; its output is in `log_path`."""

    name: str
    process: ManagedProcess

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        return self.process.popen

    @property
    def log_path(self) -> Path:
        assert self.process.log_path is not None
        return self.process.log_path

    def log(self) -> str:
        return self.process.log()

    @property
    def running(self) -> bool:
        return self.process.running

    def send_signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the whole session (the process and anything it started) and reap it."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.kill()

    def check_running(self) -> None:
        if self.popen.poll() is not None:
            raise AssertionError(
                f"{self.name} exited with {self.popen.returncode}:\n{self.log()[-4000:]}"
            )


@dataclass
class McProc(Proc):
    mc_id: str = ""
    grpc_endpoint: str = ""
    health_url: str = ""
    ca_file: Path | None = None  # what verifies an https:// `grpc_endpoint`

    def channel(self) -> grpc.Channel:
        """A channel to the MC's gRPC port (TLS when it serves TLS)."""
        return grpc_channel(self.grpc_endpoint, self.ca_file)

    def metrics(self) -> str:
        """The MC's own /metrics exposition."""
        response = httpx.get(f"{self.health_url}/metrics", timeout=HTTP_TIMEOUT_S)
        assert response.status_code == 200, response.text
        return response.text


@dataclass
class GcProc(Proc):
    """A GC process and an HTTP client for its API."""

    gc_id: str = ""
    grpc_endpoint: str = ""
    http_url: str = ""
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=HTTP_TIMEOUT_S))
    ca_file: Path | None = None  # what verifies an https:// `grpc_endpoint`

    def channel(self) -> grpc.Channel:
        """A channel to the GC's gRPC port (TLS when it serves TLS)."""
        return grpc_channel(self.grpc_endpoint, self.ca_file)

    def aio_channel(self) -> grpc.aio.Channel:
        return aio_grpc_channel(self.grpc_endpoint, self.ca_file)

    def get(self, path: str) -> httpx.Response:
        return self.client.get(f"{self.http_url}{path}")

    def join(self, meeting_path: str) -> httpx.Response:
        """POST /v1/meetings/{meeting_path}/join (`meeting_path` as it goes in the URL)."""
        return self.client.post(f"{self.http_url}/v1/meetings/{meeting_path}/join")

    def json(self, path: str) -> Any:
        response = self.get(path)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def metrics(self) -> str:
        response = self.get("/metrics")
        assert response.status_code == 200, response.text
        return response.text

    def controllers(self) -> dict[str, dict[str, Any]]:
        return {c["id"]: c for c in self.json("/v1/controllers")}

    def media_handlers(self) -> dict[str, dict[str, Any]]:
        return {h["id"]: h for h in self.json("/v1/media-handlers")}

    def events(self, meeting_id: str) -> list[dict[str, Any]]:
        """The GC's recent placement events of one meeting, oldest first."""
        recent = self.json("/v1/placements/recent")
        return [e for e in reversed(recent) if e["meeting_id"] == meeting_id]

    def status(self, path: str) -> int | None:
        """HTTP status of GET `path`, None while nothing answers."""
        try:
            return self.get(path).status_code
        except httpx.TransportError:
            return None

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        def ready() -> bool:
            self.check_running()
            return self.status("/health/ready") == 200

        wait_until(ready, timeout=timeout, what=f"{self.name} ready")

    def wait_controllers(
        self, health: Mapping[str, str], *, timeout: float = START_TIMEOUT_S
    ) -> float:
        """Wait until every MC id in `health` has that health in GET /v1/controllers."""

        def reached() -> bool:
            seen = self.controllers()
            return all(seen.get(mc, {}).get("health") == h for mc, h in health.items())

        return wait_until(reached, timeout=timeout, what=f"controllers {dict(health)}")


@dataclass
class Fleet:
    """Starts GCs, MCs and MHs for one test; `close()` kills every one of them."""

    tmp_path: Path
    key_dir: Path
    redis_url: str
    procs: list[Proc] = field(default_factory=list)
    mcs: dict[str, McProc] = field(default_factory=dict)
    # Every gRPC hop on TLS (see the module); False: plaintext everywhere.
    tls: bool = True

    def __post_init__(self) -> None:
        self.tls_dir = self.tmp_path / "tls"
        # One key per instance, bound to its id (`<tmp_path>/keys/<service>/<id>.key`); the GCs
        # trust the `mc` and `mh` directories, the MCs the `gc` one. `key_dir` keeps the legacy
        # trio for tests that need an unbound key.
        self.keys = FleetKeys(self.tmp_path / "keys")
        self._gc_started = False
        # The GCs' keys exist from the start: an MC may start before its GC (and trusts both).
        generate_fleet_keys(self.keys.root, gcs=USUAL_GCS)

    def add_keys(self, *, mcs: Iterable[str] = (), mhs: Iterable[str] = ()) -> None:
        """Generate the keys of MCs and MHs started after a GC: call it before the GC starts,
        which reads the trusted directories once."""
        generate_fleet_keys(self.keys.root, gcs=(), mcs=mcs, mhs=mhs)

    @property
    def grpc_scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def ca_file(self) -> Path | None:
        """The fleet's CA certificate (None with TLS off)."""
        return self.tls_dir / "ca.crt" if self.tls else None

    def tls_env(self, name: str, prefix: str) -> dict[str, str]:
        """`<prefix>_TLS_*` for process `name`: a certificate of its own for 127.0.0.1 and
        localhost (made now, from the fleet's CA) and that CA; {} with TLS off."""
        if not self.tls:
            return {}
        issued = generate_certs(self.tls_dir, name, parse_hosts("127.0.0.1,localhost"))
        return {
            f"{prefix}_TLS_CERT_FILE": str(issued.cert),
            f"{prefix}_TLS_KEY_FILE": str(issued.key),
            f"{prefix}_TLS_CA_FILE": str(issued.ca_cert),
        }

    def tls_files(self, name: str) -> list[str]:
        """[certificate, key, CA] for process `name` (three "" with TLS off)."""
        env = self.tls_env(name, "MH")
        return [env.get(f"MH_TLS_{k}_FILE", "") for k in ("CERT", "KEY", "CA")]

    def _key(self, service: str, instance_id: str) -> Path:
        if not self.keys.key(service, instance_id).exists() and self._gc_started:
            raise AssertionError(
                f"{instance_id} has no key and a GC already started: call "
                f"fleet.add_keys({service}s=[{instance_id!r}]) before start_gc"
            )
        return self.keys.add(service, instance_id)

    def _start(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> ManagedProcess:
        return ManagedProcess.start(
            argv,
            log_path=self.tmp_path / f"{name}.log",
            env=_clean_env(env),
            name=name,
            truncate_log=True,
        )

    def _spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> Proc:
        proc = Proc(name, self._start(name, argv, env))
        self.procs.append(proc)
        return proc

    # -- GC ----------------------------------------------------------------------------------

    def start_gc(
        self,
        database_url: str,
        *,
        gc_id: str = "gc-1",
        wait: bool = True,
        grpc_port: int | None = None,
        http_port: int | None = None,
        name: str | None = None,
        **env: str,
    ) -> GcProc:
        """A GC on the given loopback ports (free ones when None: a restarted GC may take the
        ports its MCs and proxies already point at); `env` are extra or overriding GC_* values
        by full name; `name` (default `gc_id`) names its process and log. With `wait`, returns
        once /health/ready answers 200."""
        grpc_port = grpc_port or free_port()
        http_port = http_port or free_port()
        name = name or gc_id
        values = {
            **FAST_GC_ENV,
            "GC_ID": gc_id,
            "GC_GRPC_BIND": f"127.0.0.1:{grpc_port}",
            "GC_HTTP_BIND": f"127.0.0.1:{http_port}",
            "GC_DATABASE_URL": database_url,
            "GC_SERVICE_KEY_FILE": str(self.keys.add("gc", gc_id)),
            "GC_TRUSTED_MC_KEY_FILES": str(self.keys.trusted("mc")),
            "GC_TRUSTED_MH_KEY_FILES": str(self.keys.trusted("mh")),
            # gRPC on TLS, the HTTP API plain (as `darktower dev`).
            "GC_HTTP_TLS": "false",
            **self.tls_env(gc_id, "GC"),
            **env,
        }
        # The usual ids need no `add_keys` (and no trusted directory is ever empty).
        self.add_keys(mcs=USUAL_MCS, mhs=USUAL_MHS)
        self._gc_started = True
        gc = GcProc(
            name,
            self._start(name, darktower_command("gc"), values),
            gc_id=gc_id,
            grpc_endpoint=f"{self.grpc_scheme}://127.0.0.1:{grpc_port}",
            http_url=f"http://127.0.0.1:{http_port}",
            ca_file=self.ca_file,
        )
        self.procs.append(gc)
        if wait:
            gc.wait_ready()
        return gc

    # -- MCs ---------------------------------------------------------------------------------

    def start_mc(self, gc: GcProc, mc_id: str, **settings: str) -> McProc:
        """An MC registering with `gc` (not waited for: see `GcProc.wait_controllers`);
        `settings` are extra MC_* values by lower-case field name (`max_meetings="1"`)."""
        grpc_port, health_port = free_port(), free_port()
        values = {
            **FAST_MC_ENV,
            "MC_ID": mc_id,
            "MC_GRPC_BIND": f"127.0.0.1:{grpc_port}",
            "MC_HEALTH_BIND": f"127.0.0.1:{health_port}",
            "MC_CLIENT_BIND": f"127.0.0.1:{free_port()}",
            "MC_REDIS_URL": self.redis_url,
            "MC_GC_ENDPOINT": gc.grpc_endpoint,
            "MC_SERVICE_KEY_FILE": str(self._key("mc", mc_id)),
            "MC_TRUSTED_GC_KEY_FILES": str(self.keys.trusted("gc")),
            # gRPC on TLS, the client WebSocket plain (as `darktower dev`).
            "MC_CLIENT_TLS": "false",
            **self.tls_env(mc_id, "MC"),
        }
        values.update({f"MC_{k.upper()}": v for k, v in settings.items()})
        mc = McProc(
            mc_id,
            self._start(mc_id, darktower_command("mc"), values),
            mc_id=mc_id,
            grpc_endpoint=f"{self.grpc_scheme}://127.0.0.1:{grpc_port}",
            health_url=f"http://127.0.0.1:{health_port}",
            ca_file=self.ca_file,
        )
        self.procs.append(mc)
        self.mcs[mc_id] = mc
        return mc

    # -- MHs ---------------------------------------------------------------------------------

    def start_mh_group(self, gc: GcProc, zones: Mapping[str, str]) -> Proc:
        """One light process running a simulated MH per `id -> zone` of `zones`."""
        specs = [f"{mh_id}={zone}" for mh_id, zone in zones.items()]
        for mh_id in zones:
            self._key("mh", mh_id)
        name = "mh-group-" + "-".join(zones)
        argv = [
            sys.executable,
            "-c",
            _MH_GROUP_SCRIPT,
            str(self.keys.trusted("mh")),
            gc.grpc_endpoint,
            REGION,
            *self.tls_files(f"mh-group-{sum(p.name.startswith('mh-group-') for p in self.procs)}"),
            *specs,
        ]
        return self._spawn(name, argv, {})

    def start_mh_sim(self, gc: GcProc, mh_id: str, zone: str) -> Proc:
        """One MH through the real `darktower mh-sim` command."""
        argv = darktower_command(
            "mh-sim",
            "--key",
            str(self._key("mh", mh_id)),
            "--gc",
            gc.grpc_endpoint,
            "--id",
            mh_id,
            "--zone",
            zone,
            "--region",
            REGION,
        )
        cert, key, ca = self.tls_files(mh_id)
        if cert:
            argv += ["--tls-cert", cert, "--tls-key", key, "--tls-ca", ca]
        return self._spawn(mh_id, argv, {})

    # -- a whole fleet -----------------------------------------------------------------------

    def up(
        self,
        database_url: str,
        *,
        mcs: Mapping[str, Mapping[str, str]] = {},
        mhs: Mapping[str, str] = {},
    ) -> GcProc:
        """A GC, the MCs `mcs` (id -> MC settings) and MHs `mhs` (id -> zone), all started at
        once; returns when the GC is ready, every MC healthy and every MH reporting."""
        self.add_keys(mcs=mcs, mhs=mhs)
        gc = self.start_gc(database_url, wait=False)
        for mc_id, settings in mcs.items():
            self.start_mc(gc, mc_id, **settings)
        if mhs:
            self.start_mh_group(gc, mhs)
        gc.wait_ready()
        self.wait_fleet(gc, mcs=mcs, mhs=mhs)
        return gc

    def wait_fleet(self, gc: GcProc, *, mcs: Iterable[str], mhs: Iterable[str]) -> None:
        """Wait until `gc` sees every MC of `mcs` healthy and every MH of `mhs` reporting,
        failing at once if any process of the fleet died."""

        def all_running() -> None:
            for proc in self.procs:
                proc.check_running()

        mc_ids, mh_ids = list(mcs), list(mhs)

        def healthy() -> bool:
            all_running()
            seen = gc.controllers()
            handlers = gc.media_handlers()
            return all(seen.get(m, {}).get("health") == "healthy" for m in mc_ids) and all(
                handlers.get(h, {}).get("health") == "healthy" for h in mh_ids
            )

        wait_until(healthy, timeout=START_TIMEOUT_S, what=f"fleet up: MCs {mc_ids}, MHs {mh_ids}")

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
        print(self.logs())  # pytest shows it for a failed test

    def close(self) -> None:
        """Kill every process started (SIGKILL to its session) and close HTTP clients."""
        for proc in self.procs:
            proc.kill()
            if isinstance(proc, GcProc):
                proc.client.close()

    def logs(self, tail: int = 40) -> str:
        """The last `tail` lines of every process's log, for a failure report."""
        parts = []
        for proc in self.procs:
            lines = proc.log().splitlines()[-tail:]
            parts.append(f"----- {proc.name} (rc={proc.process.poll()}) -----\n" + "\n".join(lines))
        return "\n".join(parts)
