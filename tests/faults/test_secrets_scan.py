"""Scenario 11: secrets never leave the processes — not in a log line, a `/metrics` body, an
HTTP error body or a gRPC error detail — through normal work and through failures
(docs/reference.md,
"Config and secrets").

Real `darktower gc` and `darktower mc` processes run with distinctive secret values, fresh
for each run: a Redis password (a `redis-server --requirepass` of our own), a database password
(PostgreSQL with `DARKTOWER_TEST_DATABASE_URL`: trust authentication takes any password; on
SQLite there is none, and that test is skipped), the private keys (their PEM body and the raw
key in hex, base64 and base64url), the MC's binding-token secret, and the GC's webhook signing
secret with a webhook URL's password and token (webhooks on, to a port where nobody listens,
so the GC retries and logs its failures). Both log at DEBUG, in
JSON lines (`GC_LOG_FORMAT`/`MC_LOG_FORMAT=json`, the format a production fleet ships), and write
every span they make to their output (`OTEL_TRACES_EXPORTER=console`): span attributes and
recorded exceptions are scanned with the logs. (The text format goes through the same redaction
filter: tests/runtime/test_logs.py runs its table in both formats.)

The scenario (`scenario`, run once for the module): registration and heartbeats, an MH
registered over gRPC, a join placed through the GC's HTTP API, failed joins and refused gRPC
calls of every kind; then faults: Redis killed (until the MC reports itself unhealthy and a
join is refused), on PostgreSQL the GC's database connections terminated and its schema moved
away (until the GC answers 503 `database`); then SIGTERM to both. Everything either process
said is collected and scanned; `test_the_failure_paths_ran` makes sure the scan saw the
failures, not just a quiet run.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import psutil
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.message import Message
from sqlalchemy import text
from sqlalchemy.engine import make_url

from darktower.auth.api_keys import ApiKey, write_api_key_file
from darktower.auth.client import ServiceTokenProvider
from darktower.auth.keys import generate_key_files, load_private_key
from darktower.auth.tokens import GC_AUDIENCE, SERVICE_PROFILES
from darktower.embedded.redis import find_redis_server, free_port
from darktower.gc.store import create_engine, sqlite_url
from darktower.runtime.processes import ManagedProcess
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc
from tests.support.databases import DATABASE_URL_ENV
from tests.support.tracing import log_lines, spans
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

REGION = "test"
MC_ID = "mc-secrets"
START_TIMEOUT_S = 40.0  # a loaded two-core machine imports slowly
WAIT_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0
HTTP_TIMEOUT_S = 15.0
GRPC_TIMEOUT_S = 10.0


@dataclass
class Proc:
    """A `darktower` process (`ManagedProcess`: a session of its own, stdout and stderr in one
    file, gone with a SIGKILLed test run)."""

    name: str
    process: ManagedProcess

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        return self.process.popen

    def log(self) -> str:
        return self.process.log()

    def terminate(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM; the exit code (AssertionError if it did not exit in time)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running {timeout}s after SIGTERM") from None

    def kill(self) -> None:
        if self.process.running:
            self.process.kill()


def _start(name: str, argv: list[str], env: Mapping[str, str], tmp: Path) -> Proc:
    process = ManagedProcess.start(
        argv, log_path=tmp / f"{name}.log", name=name, env=env, truncate_log=True
    )
    return Proc(name, process)


def _service_env(values: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MC_", "GC_", "OTEL_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env["OTEL_TRACES_EXPORTER"] = "console"
    env.update(values)
    return env


Statement = str | tuple[str, dict[str, Any]]


def _run_sql(url: str, *statements: Statement) -> list[Any]:
    """Run statements (text, or text and parameters) on `url` in one transaction, on a loop
    of their own in a worker thread; the rows of the last one."""

    async def run() -> list[Any]:
        engine = create_engine(url)
        try:
            async with engine.begin() as connection:
                rows: list[Any] = []
                for statement in statements:
                    sql, params = statement if isinstance(statement, tuple) else (statement, {})
                    result = await connection.execute(text(sql), params)
                    rows = list(result.fetchall()) if result.returns_rows else []
                return rows
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, run()).result(timeout=30)


# --- needles -------------------------------------------------------------------------------


def key_needles(key_file: Path) -> list[str]:
    """What of a private key must never appear: each PEM body line, and the raw key in hex,
    base64 and base64url."""
    pem = key_file.read_text()
    lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    key = load_private_key(key_file)
    assert isinstance(key, Ed25519PrivateKey)
    raw = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return [
        *lines,
        raw.hex(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ]


@dataclass
class Scenario:
    """What the run produced: every output, by where it came from, and what happened."""

    needles: dict[str, list[str]]
    outputs: list[tuple[str, str]] = field(default_factory=list)
    events: set[str] = field(default_factory=set)
    admin_url: str | None = None  # PostgreSQL (no password), or None on SQLite
    schema: str = ""

    def collect(self, where: str, output: str | bytes) -> None:
        text_ = output.decode("utf-8", "replace") if isinstance(output, bytes) else output
        self.outputs.append((where, text_))

    def leaks(self, kind: str) -> list[str]:
        return [
            f"{kind} #{i} in {where}"
            for where, output in self.outputs
            for i, needle in enumerate(self.needles[kind])
            if needle in output
        ]


# --- the services' calls -------------------------------------------------------------------


def _tokens(key_dir: Path, service: str, as_id: str = "") -> tuple[tuple[str, str], ...]:
    """`service`'s token as its instance here, or `as_id` (`sub`), for the server it calls
    (`aud`)."""
    service_type, scope = SERVICE_PROFILES[service]
    issuer, audience = {
        "gc": ("gc-secrets", MC_ID),
        "mc": (MC_ID, GC_AUDIENCE),
        "mh": ("mh-secrets", GC_AUDIENCE),
    }[service]
    provider = ServiceTokenProvider(
        load_private_key(key_dir / f"{service}.key"),
        service_type=service_type,
        scope=scope,
        issuer=as_id or issuer,
        audience=audience,
    )
    return provider.metadata()


def _grpc_error(
    scenario: Scenario,
    label: str,
    call: Callable[..., Message],
    request: Message,
    metadata: tuple[tuple[str, str], ...] | None,
) -> grpc.StatusCode | None:
    """Make one call expected to fail; collect its details; its code (None if it succeeded)."""
    try:
        answer = call(request, metadata=metadata, timeout=GRPC_TIMEOUT_S)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        scenario.collect(f"gRPC {label} details", exc.details() or "")
        scenario.collect(f"gRPC {label} error", str(exc))
        scenario.events.add(f"grpc:{label}:{code.name}")
        return code
    scenario.collect(f"gRPC {label} answer", str(answer))
    return None


def _http(scenario: Scenario, label: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
    response = httpx.request(method, url, timeout=HTTP_TIMEOUT_S, **kwargs)
    scenario.collect(f"HTTP {label} {response.status_code}", response.content)
    scenario.events.add(f"http:{label}:{response.status_code}")
    return response


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2.0).status_code
    except httpx.TransportError:
        return None


def _gc_backend_ports(gc: Proc, pg_port: int) -> set[int]:
    """Local ports of the GC process's connections to PostgreSQL."""
    connections = psutil.Process(gc.popen.pid).net_connections(kind="tcp")
    return {c.laddr.port for c in connections if c.raddr and c.raddr.port == pg_port}


# --- the scenario --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    tmp = tmp_path_factory.mktemp("secrets-scan")
    key_dir = tmp / "keys"
    generate_key_files(key_dir)
    redis_password = f"redisPw{secrets.token_hex(10)}"
    db_password = f"dbPw{secrets.token_hex(10)}"
    binding_secret = f"bindSecret{secrets.token_hex(10)}"
    # Webhooks on, to a closed port: the GC retries, logs, counts — with the signing secret,
    # and the URL's credentials and token, as needles (docs/webhooks.md).
    webhook_key = ApiKey(key_id="APIsecretsscan01", secret=f"hookSecret{secrets.token_hex(16)}")
    write_api_key_file(tmp / "webhook-key.json", webhook_key)
    hook_password, hook_token = f"hookPw{secrets.token_hex(10)}", f"hookTok{secrets.token_hex(10)}"
    webhook_env = {
        "GC_WEBHOOK_URLS": f"http://hook:{hook_password}@127.0.0.1:{free_port()}/h?t={hook_token}",
        "GC_WEBHOOK_KEY_FILE": str(tmp / "webhook-key.json"),
        "GC_WEBHOOK_RETRY_CAP_SECONDS": "1",
    }
    redis_port = free_port()
    redis_url = f"redis://:{redis_password}@127.0.0.1:{redis_port}/0"

    base = os.environ.get(DATABASE_URL_ENV)
    schema = f"t_{secrets.token_hex(8)}"
    if base:
        _run_sql(base, f'CREATE SCHEMA "{schema}"')
        parsed = make_url(base).set(password=db_password)
        database_url = parsed.update_query_dict({"search_path": schema}).render_as_string(
            hide_password=False
        )
    else:
        database_url = sqlite_url(tmp / "gc.sqlite3")

    result = Scenario(
        needles={
            "redis password": [redis_password, redis_url],
            "database password": [db_password, database_url] if base else [],
            "private key": [
                n for s in ("gc", "mc", "mh") for n in key_needles(key_dir / f"{s}.key")
            ],
            "binding secret": [binding_secret],
            "webhook secret": [webhook_key.secret, hook_password, hook_token],
        },
        admin_url=base or None,
        schema=schema,
    )
    started: list[Proc] = []
    argv = [
        find_redis_server(),
        "--port", str(redis_port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(tmp),
        "--requirepass", redis_password,
    ]  # fmt: skip
    redis_server = ManagedProcess.start(argv, log_path=None, name="redis-server")
    try:

        def kill_redis() -> None:
            redis_server.kill()

        webhook_env["GC_EVENTS_REDIS_URL"] = redis_url
        _run(
            result,
            tmp,
            key_dir,
            redis_url,
            database_url,
            binding_secret,
            started,
            kill_redis,
            webhook_env,
        )
        yield result
    finally:
        for proc in started:
            proc.kill()
        redis_server.kill()
        if base:
            _run_sql(
                base,
                f'DROP SCHEMA IF EXISTS "{schema}" CASCADE',
                f'DROP SCHEMA IF EXISTS "{schema}_gone" CASCADE',
            )


def _run(
    scenario: Scenario,
    tmp: Path,
    key_dir: Path,
    redis_url: str,
    database_url: str,
    binding_secret: str,
    started: list[Proc],
    kill_redis: Callable[[], None],
    webhook_env: Mapping[str, str],
) -> None:
    def redis_answers() -> bool:
        try:
            with redis.Redis.from_url(redis_url, socket_timeout=0.5) as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_until(redis_answers, timeout=10, what="redis answering")

    gc_grpc, gc_http = free_port(), free_port()
    mc_grpc, mc_health, mc_client = free_port(), free_port(), free_port()
    gc_url, mc_url = f"http://127.0.0.1:{gc_http}", f"http://127.0.0.1:{mc_health}"
    command = [sys.executable, "-m", "darktower"]
    gc_env = {
        "GC_ID": "gc-secrets",
        "GC_REGION": REGION,
        "GC_GRPC_BIND": f"127.0.0.1:{gc_grpc}",
        "GC_HTTP_BIND": f"127.0.0.1:{gc_http}",
        "GC_DATABASE_URL": database_url,
        "GC_SERVICE_KEY_FILE": str(key_dir / "gc.key"),
        "GC_TRUSTED_MC_KEY_FILES": str(key_dir / "mc.pub"),
        "GC_TRUSTED_MH_KEY_FILES": str(key_dir / "mh.pub"),
        "GC_FAST_HEARTBEAT_MS": "300",
        "GC_COMPREHENSIVE_HEARTBEAT_MS": "1000",
        "GC_MC_CALL_TIMEOUT_SECONDS": "5",
        "GC_LOG_LEVEL": "DEBUG",
        "GC_LOG_FORMAT": "json",
        "GC_ALLOW_GUESTS": "true",
        "GC_ALLOW_UNBOUND_KEYS": "true",  # the legacy trio, by opt-in
        **webhook_env,
    }
    mc_env = {
        "MC_ID": MC_ID,
        "MC_REGION": REGION,
        "MC_GRPC_BIND": f"127.0.0.1:{mc_grpc}",
        "MC_HEALTH_BIND": f"127.0.0.1:{mc_health}",
        "MC_CLIENT_BIND": f"127.0.0.1:{mc_client}",
        "MC_REDIS_URL": redis_url,
        "MC_GC_ENDPOINT": f"http://127.0.0.1:{gc_grpc}",
        "MC_SERVICE_KEY_FILE": str(key_dir / "mc.key"),
        "MC_TRUSTED_GC_KEY_FILES": str(key_dir / "gc.pub"),
        "MC_BINDING_TOKEN_SECRET": binding_secret,
        "MC_REDIS_CHECK_SECONDS": "0.2",
        "MC_REGISTRATION_BACKOFF_BASE": "0.1",
        "MC_REGISTRATION_BACKOFF_CAP": "0.5",
        "MC_DRAIN_SECONDS": "3",
        "MC_LOG_LEVEL": "DEBUG",
        "MC_LOG_FORMAT": "json",
        "MC_ALLOW_UNBOUND_KEYS": "true",  # the legacy trio, by opt-in
    }
    gc = _start("gc", [*command, "gc"], _service_env(gc_env), tmp)
    started.append(gc)
    mc = _start("mc", [*command, "mc"], _service_env(mc_env), tmp)
    started.append(mc)
    try:
        _exercise(scenario, key_dir, gc, mc, gc_url, mc_url, gc_grpc, mc_grpc, kill_redis)
    finally:
        # Whatever happened, both logs are scanned (an early failure still shows what leaked).
        for proc in (mc, gc):
            if proc.popen.poll() is None:
                code = proc.terminate()
                scenario.events.add(f"exit:{proc.name}:{code}")
            scenario.collect(f"{proc.name} log", proc.log())


def _exercise(
    scenario: Scenario,
    key_dir: Path,
    gc: Proc,
    mc: Proc,
    gc_url: str,
    mc_url: str,
    gc_grpc: int,
    mc_grpc: int,
    kill_redis: Callable[[], None],
) -> None:
    for proc, url in ((gc, f"{gc_url}/health/live"), (mc, f"{mc_url}/health/live")):

        def live(proc: Proc = proc, url: str = url) -> bool:
            assert proc.popen.poll() is None, f"{proc.name} exited:\n{proc.log()}"
            return _status(url) == 200

        wait_until(live, timeout=START_TIMEOUT_S, what=f"{proc.name} live")

    gc_metadata, mc_metadata, mh_metadata = (_tokens(key_dir, s) for s in ("gc", "mc", "mh"))
    gc_channel = grpc.insecure_channel(f"127.0.0.1:{gc_grpc}")
    mc_channel = grpc.insecure_channel(f"127.0.0.1:{mc_grpc}")
    with gc_channel, mc_channel:
        registry = pb_grpc.MediaHandlerRegistryServiceStub(gc_channel)
        controllers = pb_grpc.GlobalControllerServiceStub(gc_channel)
        meeting_controller = pb_grpc.MeetingControllerServiceStub(mc_channel)

        # Normal work: an MH registers and reports, the MC registers and beats, a join is placed.
        registry.RegisterMH(
            pb.RegisterMHRequest(
                handler_id="mh-secrets",
                region=REGION,
                webtransport_endpoint="https://mh-secrets.example:4433",
                grpc_endpoint="http://127.0.0.1:1",
                max_streams=1000,
                zone="z1",
            ),
            metadata=mh_metadata,
            timeout=GRPC_TIMEOUT_S,
        )
        registry.SendLoadReport(
            pb.MHLoadReportRequest(handler_id="mh-secrets", health=pb.HEALTHY),
            metadata=mh_metadata,
            timeout=GRPC_TIMEOUT_S,
        )

        def mc_healthy() -> bool:
            listed = httpx.get(f"{gc_url}/v1/controllers", timeout=HTTP_TIMEOUT_S).json()
            return any(c["id"] == MC_ID and c["health"] == "healthy" for c in listed)

        wait_until(mc_healthy, timeout=WAIT_TIMEOUT_S, what="the MC registered and healthy")
        placed = _http(scenario, "join", "POST", f"{gc_url}/v1/meetings/scan-1/join")
        assert placed.status_code == 200, placed.text
        # The meeting's start is an event: the GC tries its webhook, refused, and retries.
        wait_until(
            lambda: "webhooks: delivery to http://127.0.0.1" in gc.log(),
            timeout=WAIT_TIMEOUT_S,
            what="the GC retrying a webhook",
        )
        scenario.events.add("gc:webhook-retried")
        scenario.collect("GC webhook status", httpx.get(f"{gc_url}/v1/webhooks").content)
        _http(scenario, "controllers", "GET", f"{gc_url}/v1/controllers")
        _http(scenario, "meeting", "GET", f"{gc_url}/v1/meetings/scan-1")

        # Refusals of every kind.
        _http(scenario, "join-bad-id", "POST", f"{gc_url}/v1/meetings/bad!id/join")
        _http(
            scenario,
            "join-bad-body",
            "POST",
            f"{gc_url}/v1/meetings/scan-2/join",
            content=b'{"user_id": ',
            headers={"Content-Type": "application/json"},
        )
        _http(scenario, "meeting-unknown", "GET", f"{gc_url}/v1/meetings/never-placed")
        bad_assign = pb.AssignMeetingWithMhRequest(meeting_id="bad{id}")
        _grpc_error(
            scenario,
            "assign-invalid",
            meeting_controller.AssignMeetingWithMh,
            bad_assign,
            gc_metadata,
        )
        _grpc_error(
            scenario, "assign-no-token", meeting_controller.AssignMeetingWithMh, bad_assign, None
        )
        _grpc_error(
            scenario,
            "assign-wrong-caller",
            meeting_controller.AssignMeetingWithMh,
            bad_assign,
            mc_metadata,
        )
        _grpc_error(
            scenario,
            "register-user-info",
            controllers.RegisterMC,
            pb.RegisterMCRequest(
                id="mc-x", region=REGION, grpc_endpoint="http://user:pass@mc-x:1", max_meetings=1
            ),
            mc_metadata,
        )
        _grpc_error(
            scenario,
            "heartbeat-unknown",
            controllers.FastHeartbeat,
            pb.FastHeartbeatRequest(
                controller_id="mc-unknown",
                capacity=pb.ControllerCapacity(max_meetings=1, max_participants=1),
            ),
            _tokens(key_dir, "mc", as_id="mc-unknown"),  # itself, so NOT_FOUND: unregistered
        )
        _grpc_error(
            scenario,
            "load-report-nan",
            registry.SendLoadReport,
            pb.MHLoadReportRequest(handler_id="mh-secrets", cpu_usage_percent=float("nan")),
            mh_metadata,
        )
        scenario.collect("MC metrics (healthy)", httpx.get(f"{mc_url}/metrics").text)
        scenario.collect("GC metrics (healthy)", httpx.get(f"{gc_url}/metrics").text)

        _redis_outage(scenario, kill_redis, mc, gc_url, mc_url, meeting_controller, gc_metadata)
        if scenario.admin_url is not None:
            _database_outage(
                scenario, gc, gc_url, controllers, mc_metadata, scenario.admin_url, scenario.schema
            )

    # The stop, with Redis (and the database) still gone: drains and shutdowns fail too.
    for proc in (mc, gc):
        code = proc.terminate()
        scenario.events.add(f"exit:{proc.name}:{code}")


def _redis_outage(
    scenario: Scenario,
    kill_redis: Callable[[], None],
    mc: Proc,
    gc_url: str,
    mc_url: str,
    meeting_controller: pb_grpc.MeetingControllerServiceStub,
    gc_metadata: tuple[tuple[str, str], ...],
) -> None:
    """Kill Redis; wait until the MC says so; a join and a direct assignment are refused."""
    kill_redis()
    wait_until(
        lambda: _status(f"{mc_url}/health/ready") == 503,
        timeout=WAIT_TIMEOUT_S,
        what="the MC unready without Redis",
    )
    ready = _http(scenario, "mc-ready-without-redis", "GET", f"{mc_url}/health/ready")
    if ready.status_code == 503 and ready.json().get("reason") == "redis unreachable":
        scenario.events.add("mc:redis-unreachable")
    wait_until(
        lambda: "redis unreachable" in mc.log(), timeout=WAIT_TIMEOUT_S, what="the outage logged"
    )
    # The MC's next heartbeat says UNHEALTHY; until then the GC may still try it and be refused.
    _http(scenario, "join-without-redis", "POST", f"{gc_url}/v1/meetings/scan-3/join")
    refused = meeting_controller.AssignMeetingWithMh(
        pb.AssignMeetingWithMhRequest(
            meeting_id="scan-direct",
            mh_assignments=[
                pb.MhAssignment(mh_id="mh-1", webtransport_endpoint="https://mh-1.example:4433")
            ],
        ),
        metadata=gc_metadata,
        timeout=GRPC_TIMEOUT_S,
    )
    scenario.collect("gRPC assign-without-redis answer", str(refused))
    if not refused.accepted and refused.rejection_reason == pb.REJECTION_REASON_UNHEALTHY:
        scenario.events.add("mc:assign-refused-unhealthy")
    scenario.collect("MC metrics (no Redis)", httpx.get(f"{mc_url}/metrics").text)
    scenario.collect("GC metrics (no Redis)", httpx.get(f"{gc_url}/metrics").text)


def _database_outage(
    scenario: Scenario,
    gc: Proc,
    gc_url: str,
    controllers: pb_grpc.GlobalControllerServiceStub,
    mc_metadata: tuple[tuple[str, str], ...],
    admin_url: str,
    schema: str,
) -> None:
    """PostgreSQL only: end the GC's own database sessions, then move its schema away, so
    that its queries fail; wait until it answers 503 `database`; refused gRPC calls."""
    pg_port = make_url(admin_url).port or 5432
    ports = _gc_backend_ports(gc, pg_port)
    assert ports, "the GC has no connection to PostgreSQL"
    _run_sql(
        admin_url,
        (
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE client_port = ANY(:ports) AND pid <> pg_backend_pid()",
            {"ports": sorted(ports)},
        ),
        f'ALTER SCHEMA "{schema}" RENAME TO "{schema}_gone"',
    )

    def database_refused() -> bool:
        answer = _http(scenario, "controllers-without-db", "GET", f"{gc_url}/v1/controllers")
        return answer.status_code == 503 and answer.json().get("reason") == "database"

    wait_until(database_refused, timeout=WAIT_TIMEOUT_S, what="the GC refusing without its schema")
    scenario.events.add("gc:database-refused")
    _http(scenario, "join-without-db", "POST", f"{gc_url}/v1/meetings/scan-4/join")
    _grpc_error(
        scenario,
        "heartbeat-without-db",
        controllers.FastHeartbeat,
        pb.FastHeartbeatRequest(
            controller_id=MC_ID, capacity=pb.ControllerCapacity(max_meetings=1, max_participants=1)
        ),
        mc_metadata,
    )
    # Heartbeats are written behind: the GC acknowledges them and its flushes fail (logged,
    # the beats kept pending). Give those flushes time to fail.
    wait_until(
        lambda: "heartbeat flush failed" in gc.log(),
        timeout=WAIT_TIMEOUT_S,
        what="the GC logging its failed heartbeat flushes",
    )
    scenario.events.add("gc:heartbeat-flush-failed")
    scenario.collect("GC metrics (no database)", httpx.get(f"{gc_url}/metrics").text)


# --- the scans -----------------------------------------------------------------------------


def test_the_failure_paths_ran(scenario: Scenario) -> None:
    expected = {
        "http:join:200",
        "http:join-bad-id:400",
        "http:join-bad-body:400",
        "grpc:assign-invalid:INVALID_ARGUMENT",
        "grpc:assign-no-token:UNAUTHENTICATED",
        "grpc:assign-wrong-caller:UNAUTHENTICATED",
        "grpc:register-user-info:INVALID_ARGUMENT",
        "grpc:heartbeat-unknown:NOT_FOUND",
        "grpc:load-report-nan:INVALID_ARGUMENT",
        "mc:redis-unreachable",
        "mc:assign-refused-unhealthy",
        "exit:mc:0",
        "exit:gc:0",
        "gc:webhook-retried",
    }
    if scenario.admin_url is not None:
        expected |= {"gc:database-refused", "gc:heartbeat-flush-failed"}
    assert expected <= scenario.events, sorted(expected - scenario.events)
    logs = dict(scenario.outputs)
    assert "redis unreachable" in logs["mc log"]
    assert len(scenario.outputs) > 20
    # What was scanned is JSON lines and spans: the join's trace reached the MC's fenced acquire.
    for name, service in (("gc log", "darktower-gc"), ("mc log", "darktower-mc")):
        lines = log_lines(logs[name])
        assert len(lines) > 10 and all(line["service"] == service for line in lines), name
    assert any(s.name == "redis acquire" for s in spans(logs["mc log"]))
    assert any(s.name.endswith("/join") for s in spans(logs["gc log"]))


def test_the_scan_would_see_a_leak(scenario: Scenario) -> None:
    for kind, needles in scenario.needles.items():
        assert all(len(needle) >= 16 for needle in needles), kind  # no needle matches by chance
        if needles:
            planted = Scenario(needles={kind: needles}, outputs=[("planted", f"a {needles[-1]} b")])
            assert f"{kind} #{len(needles) - 1} in planted" in planted.leaks(kind)


@pytest.mark.parametrize(
    "kind",
    ["redis password", "database password", "private key", "binding secret", "webhook secret"],
)
def test_no_secret_in_any_output(scenario: Scenario, kind: str) -> None:
    if not scenario.needles[kind]:
        pytest.skip(f"no {kind}: the GC runs on SQLite ({DATABASE_URL_ENV} is not set)")
    assert scenario.leaks(kind) == []
