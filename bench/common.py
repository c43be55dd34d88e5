"""What every benchmark shares: load loops and percentiles, results (JSON and the table),
service processes (an MC, a GC, simulated MHs, bare baselines) and a small fleet, profiling.

Service processes. Each server under test runs in a process of its own, as in a deployment:
the client that measures it (this process) never shares its event loop or its GIL. They are
forked from a multiprocessing *forkserver* that imported darktower once, because every fresh
interpreter pays seconds of imports on a loaded 2-core machine. A `Host` is one such process:
it builds one service from a factory named "module:function", answers commands over a pipe,
and stops on "stop" or when this process goes away (its end of the pipe closes). Every wait
is bounded; nothing outlives the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

import httpx
from pydantic import SecretStr
from rich.table import Table

__all__ = [
    "REGION",
    "REPO_ROOT",
    "BenchContext",
    "BenchFleet",
    "BenchResult",
    "Host",
    "LoadRun",
    "Metric",
    "Profile",
    "Service",
    "cpu_window",
    "error_notes",
    "gc_service",
    "git_sha",
    "hosts",
    "install_uvloop",
    "mc_service",
    "mh_service",
    "percentile",
    "render_table",
    "run_load",
    "summarize_profile",
    "write_result",
]

log = logging.getLogger(__name__)

REGION = "bench"
REPO_ROOT = Path(__file__).resolve().parent.parent
HOST_START_TIMEOUT_S = 60.0
HOST_STOP_TIMEOUT_S = 15.0
MAX_ERROR_SAMPLES = 3

# Imported once by the forkserver, so that each service process starts without paying them.
_PRELOAD = [
    "bench.common",
    "darktower.mc.server",
    "darktower.gc.server",
    "darktower.mhsim.simulator",
    "fastapi",
    "uvicorn",
]


# -- statistics ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class LoadRun:
    """Latencies (seconds) of the calls that succeeded, the failures, the wall time."""

    concurrency: int
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    wall_s: float = 0.0
    error_kinds: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)  # the first few, for the notes

    @property
    def calls(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.calls / self.wall_s if self.wall_s > 0 else 0.0

    def ms(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000

    def merge(self, other: LoadRun) -> LoadRun:
        kinds = self.error_kinds + other.error_kinds
        return LoadRun(
            self.concurrency,
            self.latencies + other.latencies,
            self.errors + other.errors,
            self.wall_s + other.wall_s,
            kinds,
            (self.error_samples + other.error_samples)[:MAX_ERROR_SAMPLES],
        )


async def run_load(
    call: Callable[[int], Awaitable[object]],
    *,
    concurrency: int,
    max_calls: int,
    max_seconds: float,
) -> LoadRun:
    """`concurrency` workers call `call(i)` for i = 0, 1, ... until `max_calls` calls were
    started or `max_seconds` passed. Bounded in count and time; each call bounds itself too
    (its own deadline). A call that raises counts as an error, not as a latency."""
    run = LoadRun(concurrency)
    issued = 0
    deadline = time.perf_counter() + max_seconds

    async def worker() -> None:
        nonlocal issued
        while issued < max_calls and time.perf_counter() < deadline:
            index = issued
            issued += 1
            started = time.perf_counter()
            try:
                await call(index)
            except Exception as exc:
                run.errors += 1
                run.error_kinds[type(exc).__name__] += 1
                if len(run.error_samples) < MAX_ERROR_SAMPLES:
                    run.error_samples.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            run.latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.wall_s = time.perf_counter() - started
    return run


def error_notes(runs: Iterable[LoadRun]) -> list[str]:
    """A note naming the failed calls by kind, with the first messages; none if none failed."""
    kinds: Counter[str] = Counter()
    samples: list[str] = []
    for run in runs:
        kinds += run.error_kinds
        samples += run.error_samples
    if not kinds:
        return []
    return [f"failed calls by kind: {dict(kinds)}; first: {samples[:MAX_ERROR_SAMPLES]}"]


# -- results ------------------------------------------------------------------------------


@dataclass
class Metric:
    """One row of the table. `check` judges the metric (with its baseline) against its target;
    `ratio` is value / baseline when there is a baseline."""

    name: str
    value: float
    unit: str = ""
    baseline: float | None = None
    target: str = ""
    check: Callable[[Metric], bool] | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    def ok(self, judge: bool) -> bool | None:
        if not judge or self.check is None:
            return None
        return bool(self.check(self))


@dataclass
class BenchResult:
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profile: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    def add(self, metric: Metric) -> Metric:
        self.metrics.append(metric)
        return metric

    def passed(self, judge: bool) -> bool | None:
        if self.error is not None:
            return False
        verdicts = [m.ok(judge) for m in self.metrics]
        judged = [v for v in verdicts if v is not None]
        return all(judged) if judged else None


def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _number(value: float | None) -> float | None:
    if value is None or value != value:  # NaN is not JSON
        return None
    return round(value, 6)


def write_result(
    result: BenchResult, results_dir: Path, *, judge: bool, context: Mapping[str, Any]
) -> Path:
    """`<results_dir>/<name>.json`: what ran, the figures, their baselines, ratios, targets."""
    results_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "name": result.name,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_sha": git_sha(),
        "context": dict(context),
        "parameters": result.parameters,
        "metrics": {m.name: _number(m.value) for m in result.metrics},
        "units": {m.name: m.unit for m in result.metrics},
        "baseline": {m.name: _number(m.baseline) for m in result.metrics if m.baseline},
        "ratio": {m.name: _number(m.ratio) for m in result.metrics if m.ratio is not None},
        "target": {m.name: m.target for m in result.metrics if m.target},
        "ok": {m.name: m.ok(judge) for m in result.metrics if m.check is not None},
        "passed": result.passed(judge),
        "judged": judge,
        "notes": result.notes,
        "profile": result.profile,
        "error": result.error,
        "seconds": round(result.seconds, 2),
    }
    path = results_dir / f"{result.name}.json"
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    return path


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or value != value:
        return "—"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".rstrip()


def render_table(results: Sequence[BenchResult], *, judge: bool) -> Table:
    table = Table(title="darktower benchmarks" + ("" if judge else " (smoke: targets not judged)"))
    for column in ("benchmark", "metric", "value", "baseline", "ratio", "target", "ok"):
        table.add_column(column, justify="right" if column in ("value", "baseline") else "left")
    for result in results:
        if result.error is not None:
            table.add_row(result.name, "error", result.error[:60], "", "", "", "[red]✗[/red]")
        for i, m in enumerate(result.metrics):
            verdict = m.ok(judge)
            mark = "" if verdict is None else "[green]✓[/green]" if verdict else "[red]✗[/red]"
            ratio = m.ratio
            table.add_row(
                result.name if i == 0 and result.error is None else "",
                m.name,
                _fmt(m.value, m.unit),
                _fmt(m.baseline, m.unit) if m.baseline is not None else "",
                f"{ratio:.2f}x" if ratio is not None else "",
                m.target,
                mark,
            )
        table.add_section()
    return table


# -- the run ------------------------------------------------------------------------------


@dataclass
class BenchContext:
    """What one run of the suite shares: mode, directories, the key files of the services."""

    smoke: bool
    uvloop: bool
    results_dir: Path
    workdir: Path
    profile_dir: Path | None = None

    @property
    def keys(self) -> Path:
        return self.workdir / "keys"

    @property
    def judge(self) -> bool:
        return not self.smoke

    def pick(self, full: Any, smoke: Any) -> Any:
        return smoke if self.smoke else full

    def host(self, name: str, factory: str, params: Mapping[str, Any] | None = None) -> Host:
        """A service process started from `factory` ("module:function"), logging to workdir."""
        full = {"keys": str(self.keys), "workdir": str(self.workdir), **(params or {})}
        return Host(name, factory, full, uvloop=self.uvloop, log_file=self.workdir / f"{name}.log")


def install_uvloop() -> bool:
    """Use uvloop for the loops started after this, if it is installed."""
    try:
        import uvloop
    except ImportError:
        return False
    uvloop.install()
    return True


# -- service processes --------------------------------------------------------------------


class Service(Protocol):
    """What a host process runs: `info` goes back to the parent once started."""

    info: dict[str, Any]

    async def command(self, message: Mapping[str, Any]) -> dict[str, Any]: ...

    async def stop(self) -> None: ...


_forkserver: Any = None


def _context() -> Any:
    global _forkserver
    if _forkserver is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        _forkserver = ctx
    return _forkserver


def _resolve(factory: str) -> Callable[[Mapping[str, Any]], Awaitable[Service]]:
    module, _, name = factory.partition(":")
    function: Callable[[Mapping[str, Any]], Awaitable[Service]] = getattr(
        importlib.import_module(module), name
    )
    return function


def _host_main(factory: str, params: dict[str, Any], conn: Connection, uvloop: bool) -> None:
    """Entry point of a host process (runs in the forked child)."""
    logging.basicConfig(
        filename=params["log_file"],
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if uvloop:
        install_uvloop()
    asyncio.run(_host_loop(factory, params, conn))


async def _host_loop(factory: str, params: dict[str, Any], conn: Connection) -> None:
    try:
        service = await _resolve(factory)(params)
    except BaseException as exc:
        logging.getLogger("bench.host").exception("service did not start")
        conn.send({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return
    conn.send({"ok": True, "info": service.info, "pid": os.getpid()})
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                message: dict[str, Any] = await loop.run_in_executor(None, conn.recv)
            except (EOFError, OSError):
                return  # the parent is gone
            if message.get("cmd") == "stop":
                return
            try:
                reply = await service.command(message)
            except Exception as exc:
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            conn.send(reply)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(service.stop(), HOST_STOP_TIMEOUT_S)
        with contextlib.suppress(OSError):
            conn.send({"ok": True, "stopped": True})


class Host:
    """One service process (see the module docstring). `await start()`, `call()`, `stop()`;
    `kill()` is SIGKILL (failover)."""

    def __init__(
        self,
        name: str,
        factory: str,
        params: Mapping[str, Any],
        *,
        uvloop: bool = False,
        log_file: Path,
    ) -> None:
        self.name = name
        self.info: dict[str, Any] = {}
        self.log_file = log_file
        ctx = _context()
        self._conn, child = ctx.Pipe()
        full = {**params, "log_file": str(log_file), "name": name}
        self.process = ctx.Process(
            target=_host_main, args=(factory, full, child, uvloop), name=name, daemon=True
        )
        self._child = child
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int:
        pid: int = self.process.pid
        return pid

    async def start(self, timeout: float = HOST_START_TIMEOUT_S) -> Host:
        self.process.start()
        self._child.close()
        reply = await self._receive(timeout, "start")
        if not reply.get("ok"):
            raise RuntimeError(f"{self.name} did not start: {reply.get('error')}")
        self.info = reply["info"]
        return self

    async def _receive(self, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await asyncio.to_thread(self._conn.poll, 0.2):
                try:
                    reply: dict[str, Any] = self._conn.recv()
                except EOFError:
                    break
                return reply
            if not self.process.is_alive():
                break
        tail = self.log_tail()
        raise RuntimeError(f"{self.name}: no answer to {what} within {timeout:.0f}s\n{tail}")

    async def call(self, message: Mapping[str, Any], timeout: float = 120.0) -> dict[str, Any]:
        async with self._lock:
            self._conn.send(dict(message))
            reply = await self._receive(timeout, str(message.get("cmd")))
        if not reply.get("ok"):
            raise RuntimeError(f"{self.name}: {message.get('cmd')} failed: {reply.get('error')}")
        return reply

    async def stop(self, timeout: float = HOST_STOP_TIMEOUT_S) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError, RuntimeError):
                self._conn.send({"cmd": "stop"})
                await self._receive(timeout, "stop")
        await asyncio.to_thread(self.process.join, 5)
        if self.process.is_alive():
            self.process.kill()
            await asyncio.to_thread(self.process.join, 5)
        self._conn.close()

    def kill(self) -> None:
        self.process.kill()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextlib.asynccontextmanager
async def hosts(*started: Host) -> Any:
    """Start the hosts in parallel; stop all of them on the way out, whatever happened."""
    try:
        await asyncio.gather(*(h.start() for h in started))
        yield started
    finally:
        await asyncio.gather(*(h.stop() for h in started), return_exceptions=True)


# -- service factories (run inside host processes) ----------------------------------------


class _McService:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.info = {"grpc_port": app.grpc_port, "id": app.settings.id}

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
        raise ValueError(f"unknown command {message['cmd']}")

    async def _attach(self, per_meeting: int) -> int:
        """Create `per_meeting` ConnectionActors under each hosted meeting (no-op outbox)."""
        from darktower.mc.connection import ConnectionActor
        from darktower.mc.meeting import AttachConnection

        async def outbox(_frame: object) -> None:
            return None

        meetings = list(self.app.controller.meetings.values())
        already = sum(len(m.children) for m in meetings)
        for meeting in meetings:
            for i in range(per_meeting):
                name = f"{meeting.meeting_id}-c{i}"
                meeting.send(AttachConnection(ConnectionActor(name, f"p{i}", outbox)))
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
    meeting_touch_seconds."""
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
        max_meetings=params.get("max_meetings", 1000),
        max_participants=params.get("max_participants", 10_000_000),
        meeting_touch_seconds=params.get("meeting_touch_seconds", 5.0),
        drain_seconds=3,
        # No client signaling: the benchmarks drive the MC through gRPC only.
        client_enabled=False,
        registration_backoff_base=0.1,
        registration_backoff_cap=0.5,
    )
    app = McApp(settings)
    await app.start()
    return _McService(app)


class _GcService:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.info = {"grpc_port": app.grpc_port, "http_port": app.http_port}

    async def command(self, message: Mapping[str, Any]) -> dict[str, Any]:
        raise ValueError(f"unknown command {message['cmd']}")

    async def stop(self) -> None:
        await self.app.stop()


async def gc_service(params: Mapping[str, Any]) -> Service:
    """A GcApp on a SQLite file in workdir; params staleness_s, sweep_s, fast_ms."""
    from darktower.gc.server import GcApp
    from darktower.gc.settings import GcSettings

    keys = Path(params["keys"])
    database = Path(params["workdir"]) / f"{params['name']}.db"
    settings = GcSettings(
        id="gc-bench",
        region=REGION,
        grpc_bind="127.0.0.1:0",
        http_bind="127.0.0.1:0",
        database_url=SecretStr(f"sqlite+aiosqlite:///{database}"),
        service_key_file=keys / "gc.key",
        trusted_mc_key_files=[keys / "mc.pub"],
        trusted_mh_key_files=[keys / "mh.pub"],
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
    from darktower.auth.tokens import SERVICE_PROFILES
    from darktower.mhsim.simulator import MhConfig, MhSimulator

    service_type, scope = SERVICE_PROFILES["mh"]
    tokens = ServiceTokenProvider(
        load_private_key(Path(params["keys"]) / "mh.key"),
        service_type=service_type,
        scope=scope,
        issuer="bench-mh",
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
            tokens,
        )
        for i in range(int(params["count"]))
    ]
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(s.run()) for s in simulators]
    return _MhGroup(simulators, tasks)


# -- a fleet: one GC, MCs registered with it, simulated MHs -------------------------------


class BenchFleet:
    """A GC, `mcs` MC processes registered with it and one process of `mhs` simulated MHs,
    all on one embedded Redis; `join` places a meeting over the GC's HTTP API."""

    def __init__(
        self,
        ctx: BenchContext,
        redis_url: str,
        *,
        mcs: int,
        mhs: int = 2,
        heartbeat_ms: int = 1000,
        staleness_s: float = 30.0,
        mc_params: Mapping[str, Any] | None = None,
    ) -> None:
        self.ctx = ctx
        self.gc = ctx.host(
            "gc",
            "bench.common:gc_service",
            {
                "staleness_s": staleness_s,
                "sweep_s": min(1.0, staleness_s / 3),
                "fast_ms": heartbeat_ms,
                "comprehensive_ms": heartbeat_ms * 3,
            },
        )
        self._mc_params = {"redis_url": redis_url, **(mc_params or {})}
        self._mc_count = mcs
        self._mh_count = mhs
        self.mcs: dict[str, Host] = {}
        self.mh: Host | None = None
        self.http: httpx.AsyncClient | None = None

    @property
    def gc_url(self) -> str:
        return f"http://127.0.0.1:{self.gc.info['http_port']}"

    async def __aenter__(self) -> BenchFleet:
        try:
            await self.gc.start()
            gc_grpc = f"http://127.0.0.1:{self.gc.info['grpc_port']}"
            for i in range(self._mc_count):
                mc_id = f"mc-{i + 1}"
                params = {**self._mc_params, "id": mc_id, "gc_endpoint": gc_grpc}
                self.mcs[mc_id] = self.ctx.host(mc_id, "bench.common:mc_service", params)
            self.mh = self.ctx.host(
                "mhs", "bench.common:mh_service", {"gc_endpoint": gc_grpc, "count": self._mh_count}
            )
            await asyncio.gather(*(h.start() for h in (*self.mcs.values(), self.mh)))
            limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
            self.http = httpx.AsyncClient(base_url=self.gc_url, timeout=15.0, limits=limits)
            await self.wait_healthy(set(self.mcs))
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self.http is not None:
            await self.http.aclose()
        others = [h for h in (*self.mcs.values(), self.mh) if h is not None]
        await asyncio.gather(*(h.stop() for h in others), return_exceptions=True)
        await self.gc.stop()

    async def wait_healthy(self, mc_ids: set[str], timeout: float = 60.0) -> None:
        """Until the GC sees every MC of `mc_ids` and every MH healthy."""
        assert self.http is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            controllers = (await self.http.get("/v1/controllers")).json()
            handlers = (await self.http.get("/v1/media-handlers")).json()
            mcs_ok = {c["id"] for c in controllers if c["health"] == "healthy"} >= mc_ids
            mhs_ok = sum(h["health"] == "healthy" for h in handlers) >= self._mh_count
            if mcs_ok and mhs_ok:
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"fleet not healthy within {timeout:.0f}s: {controllers} {handlers}")

    async def join(self, meeting_id: str) -> dict[str, Any]:
        """POST /v1/meetings/{id}/join; the JSON answer, or RuntimeError for a non-200."""
        assert self.http is not None
        response = await self.http.post(f"/v1/meetings/{meeting_id}/join")
        if response.status_code != 200:
            raise RuntimeError(f"join {meeting_id}: HTTP {response.status_code} {response.text}")
        answer: dict[str, Any] = response.json()
        return answer


# -- profiling ----------------------------------------------------------------------------

# Leaf-most frame whose file matches decides where a sample's time went (first match wins,
# checked from the leaf up). py-spy names frames "function (package/module.py:line)".
_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("jwt / Ed25519 verify", ("(jwt/", "(cryptography/")),
    ("redis-py", ("(redis/",)),
    ("SQL (sqlalchemy, aiosqlite)", ("(sqlalchemy/", "(aiosqlite/", "(sqlite3/", "sqlalchemy")),
    ("grpc (python side)", ("(grpc/",)),
    ("protobuf", ("(google/protobuf/",)),
    ("HTTP (uvicorn, h11, starlette, fastapi)", ("(uvicorn/", "(h11/", "(httptools/",
                                                 "(starlette/", "(fastapi/", "(anyio/")),
    ("pydantic", ("(pydantic/", "(pydantic_core/")),
    ("prometheus_client", ("(prometheus_client/",)),
    ("logging", ("(logging/",)),
    ("darktower", ("(darktower/",)),
    ("C under the loop (grpc Cython, Task steps)", ("Handle._run (asyncio/events.py",)),
    ("asyncio (python side)", ("(asyncio/", "(contextlib.py", "(typing.py")),
)  # fmt: skip

# Leaves that are a thread waiting, not working: py-spy's idle detection misses some of them
# on this machine (a loop in epoll, aiosqlite's worker on its queue, a pool thread).
_IDLE_LEAVES = (
    "EpollSelector.select (selectors.py",
    "_connection_worker_thread (aiosqlite/core.py:59)",
    "Thread.run (threading.py",
    "Condition.wait (threading.py",
    "Queue.get (queue.py",
    "_recv_bytes (multiprocessing/",
    "_recv (multiprocessing/",
    "_worker (concurrent/futures/thread.py",
)

# Functions whose inclusive share is reported (substring of the frame's function name).
_FUNCTIONS = (
    "intercept_service",
    "decode (jwt/",
    "get_unverified_header",
    "capacity (darktower/mc/controller.py",
    "_reserve",
    "_commit",
    "spawn (darktower/actors",
    "_observed",
    "observe (prometheus_client",
    "inc (prometheus_client",
    "validate_assign",
    "execute (redis/asyncio/client.py",
    "_transaction (darktower/gc/store",
    "commit (sqlalchemy",
    "handle_async_request (httpx",
    "serialize_response (fastapi",
    "verify (darktower/auth/tokens.py",
    "AssignMeetingWithMh",
    "assign (darktower/mc/assign.py",
    "_admit",
    "acquire (darktower/fencing",
    "fenced_set (darktower/fencing",
    "ask (darktower/actors",
    "join (darktower/gc/placement",
    "_reuse",
    "_try_mcs",
    "active_assignment",
    "claim_meeting",
    "activate_assignment",
    "list_controllers",
    "list_media_handlers",
    "get_controller",
    "assign (darktower/gc/mc_client.py",
    "record_heartbeat",
    "FastHeartbeat",
    "RegisterMC",
    "_do_ping",
    "do_ping",
    "mark_stale_controllers",
    "_sweep",
)


def summarize_profile(collapsed: str) -> dict[str, Any]:
    """Shares (percent of working samples) by library (leaf-most match) and, inclusive, of
    the hot functions, from py-spy's raw (collapsed stacks) output. Samples whose leaf is a
    wait (`_IDLE_LEAVES`) are counted apart and left out of the shares."""
    total = idle = 0
    by_category: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    by_leaf: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if any(frames[-1].startswith(p) for p in _IDLE_LEAVES):
            idle += count
            continue
        total += count
        category = "other"
        for frame in reversed(frames):
            hit = next((n for n, pats in _CATEGORIES if any(p in frame for p in pats)), None)
            if hit is not None:
                category = hit
                break
        by_category[category] += count
        by_leaf[frames[-1]] += count
        seen = {f for f in _FUNCTIONS if any(f in frame for frame in frames)}
        for name in seen:
            by_function[name] += count
    if total == 0:
        return {"samples": 0, "idle_samples": idle}

    def share(counter: Counter[str], n: int) -> dict[str, float]:
        return {k: round(100 * v / total, 1) for k, v in counter.most_common(n)}

    return {
        "samples": total,
        "idle_samples": idle,
        "self_by_library_pct": share(by_category, 20),
        "inclusive_pct": share(by_function, 40),
        "top_leaf_frames_pct": share(by_leaf, 15),
    }


class Profile:
    """py-spy on one process (only with `--profile DIR`), recorded in segments: `start()` …
    `stop()` as often as wanted, then `summary()` over all of them. Leaves the raw stacks
    (`<label>-<n>.txt`) and the summary (`<label>.json`) in DIR."""

    def __init__(self, ctx: BenchContext, label: str, pid: int) -> None:
        self.label = label
        self._pid = pid
        self._dir = ctx.profile_dir
        self._exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self._proc: asyncio.subprocess.Process | None = None
        self._files: list[Path] = []
        self.errors: list[str] = []
        if self._dir is not None and not Path(self._exe).exists():
            log.warning("py-spy not found: no profile for %s", label)
            self._dir = None

    async def start(self) -> None:
        if self._dir is None:
            return
        self._dir.mkdir(parents=True, exist_ok=True)
        out = self._dir / f"{self.label}-{len(self._files)}.txt"
        self._files.append(out)
        self._proc = await asyncio.create_subprocess_exec(
            self._exe, "record", "--pid", str(self._pid), "--duration", "600",
            "--rate", "250", "--format", "raw", "--nonblocking", "--output", str(out),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await asyncio.sleep(0.3)  # attaching takes a moment

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop the segment: py-spy writes its output on SIGINT."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        try:
            _, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            self.errors.append("py-spy did not stop")
            return
        if not self._files[-1].exists():
            self.errors.append(err.decode(errors="replace")[-300:])

    def summary(self) -> dict[str, Any]:
        if self._dir is None:
            return {}
        text = "\n".join(f.read_text(errors="replace") for f in self._files if f.exists())
        summary = summarize_profile(text)
        if self.errors:
            summary["errors"] = self.errors
        (self._dir / f"{self.label}.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary


@contextlib.contextmanager
def cpu_window(pid: int) -> Iterator[dict[str, float]]:
    """CPU seconds (user + system, all threads) used by `pid` inside the block, and the
    share of one core: `{"cpu_s", "wall_s", "cores"}` filled on exit."""
    import psutil

    process = psutil.Process(pid)
    before = process.cpu_times()
    started = time.perf_counter()
    figures: dict[str, float] = {}
    try:
        yield figures
    finally:
        after = process.cpu_times()
        wall = time.perf_counter() - started
        cpu = (after.user - before.user) + (after.system - before.system)
        figures.update(cpu_s=cpu, wall_s=wall, cores=cpu / wall if wall > 0 else 0.0)
