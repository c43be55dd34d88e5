"""Services start clearly or refuse clearly: a taken port, contradictory settings and the
help, with real `darktower mc` / `darktower gc` processes; a start that fails part-way
leaves nothing listening (in process, so the ports can be checked right after)."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from darktower.auth.keys import generate_key_files
from darktower.embedded.redis import free_port
from darktower.gc.server import GcApp
from darktower.gc.settings import GcSettings
from darktower.mc.server import McApp
from darktower.mc.settings import McSettings
from darktower.runtime.serving import GRPC_LISTEN_OPTIONS, StartupError, add_grpc_port, parse_bind
from tests.support.services import darktower_env, gc_values, mc_values, run_to_exit, stderr_shape

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("keys")
    generate_key_files(out)
    return out


def mc_settings(redis_url: str, key_dir: Path, **overrides: str) -> McSettings:
    values = mc_values(redis_url, key_dir) | {f"MC_{k.upper()}": v for k, v in overrides.items()}
    return McSettings(**{k.removeprefix("MC_").lower(): v for k, v in values.items()})


def assert_one_line(result: subprocess.CompletedProcess[str], expected: str) -> None:
    """Exit 2; exactly one `darktower` line, equal to `expected`; nothing but log records
    besides it (no traceback, no library's own line)."""
    assert result.returncode == 2, result.stderr
    ours, other = stderr_shape(result.stderr)
    assert ours == [expected], result.stderr
    assert other == [], result.stderr


@pytest.mark.parametrize(
    ("variable", "what"),
    [
        ("MC_GRPC_BIND", "MC gRPC"),
        ("MC_CLIENT_BIND", "MC client WebSocket"),
        ("MC_HEALTH_BIND", "MC health HTTP"),
    ],
)
def test_an_mc_on_a_taken_port_says_which_and_exits_2(
    tmp_path: Path, key_dir: Path, redis_url: str, held_port: int, variable: str, what: str
) -> None:
    values = mc_values(redis_url, key_dir) | {variable: f"127.0.0.1:{held_port}"}
    result = run_to_exit("mc", values, tmp_path)
    assert_one_line(
        result,
        f"darktower mc: cannot listen on 127.0.0.1:{held_port} ({what}): address already in use",
    )


@pytest.mark.parametrize(
    ("variable", "what"), [("GC_GRPC_BIND", "GC gRPC"), ("GC_HTTP_BIND", "GC HTTP")]
)
def test_a_gc_on_a_taken_port_says_which_and_exits_2(
    tmp_path: Path, key_dir: Path, held_port: int, variable: str, what: str
) -> None:
    values = gc_values(tmp_path, key_dir) | {variable: f"127.0.0.1:{held_port}"}
    result = run_to_exit("gc", values, tmp_path)
    assert_one_line(
        result,
        f"darktower gc: cannot listen on 127.0.0.1:{held_port} ({what}): address already in use",
    )


def test_a_second_mc_on_the_same_grpc_port_is_refused(
    tmp_path: Path, key_dir: Path, redis_url: str
) -> None:
    """grpc's core would share the port with SO_REUSEPORT; a running MC keeps it alone."""
    port = free_port()

    async def hold_and_run() -> subprocess.CompletedProcess[str]:
        server = grpc.aio.server(options=GRPC_LISTEN_OPTIONS)
        add_grpc_port(server, f"127.0.0.1:{port}", "first")
        await server.start()
        try:
            values = mc_values(redis_url, key_dir) | {"MC_GRPC_BIND": f"127.0.0.1:{port}"}
            return await asyncio.to_thread(run_to_exit, "mc", values, tmp_path)
        finally:
            await server.stop(None)

    result = asyncio.run(hold_and_run())
    assert_one_line(
        result, f"darktower mc: cannot listen on 127.0.0.1:{port} (MC gRPC): address already in use"
    )


def test_contradictory_gc_settings_are_refused_naming_both(tmp_path: Path, key_dir: Path) -> None:
    # GC_MH_LOAD_REPORT_MS is 10 s by default: with 3 s staleness every MH would be stale
    # between two reports and every join would answer 503 no_media_handler.
    values = gc_values(tmp_path, key_dir) | {
        "GC_STALENESS_SECONDS": "3",
        "GC_SWEEP_INTERVAL_SECONDS": "1",
        "GC_FAST_HEARTBEAT_MS": "1000",
    }
    result = run_to_exit("gc", values, tmp_path)
    assert result.returncode == 2, result.stderr
    ours, other = stderr_shape(result.stderr)
    assert other == [] and len(ours) == 1, result.stderr
    assert ours[0].startswith("darktower gc: bad settings: "), ours
    assert "GC_STALENESS_SECONDS=3 contradicts GC_MH_LOAD_REPORT_MS=10000" in ours[0]
    assert "GC_FAST_HEARTBEAT_MS" not in ours[0]  # 1 s beats keep MCs fresh within 3 s
    assert "GC_DATABASE_URL" not in ours[0] and "sqlite" not in ours[0]


def test_contradictory_mc_settings_are_refused_naming_both(
    tmp_path: Path, key_dir: Path, redis_url: str
) -> None:
    values = mc_values(redis_url, key_dir) | {
        "MC_REGISTRATION_BACKOFF_BASE": "60",
        "MC_REGISTRATION_BACKOFF_CAP": "30",
    }
    result = run_to_exit("mc", values, tmp_path)
    assert_one_line(
        result,
        "darktower mc: bad settings: MC_REGISTRATION_BACKOFF_BASE=60 contradicts "
        "MC_REGISTRATION_BACKOFF_CAP=30: the first retry wait would be longer than the longest",
    )


@pytest.mark.parametrize(("command", "settings"), [("mc", McSettings), ("gc", GcSettings)])
def test_help_lists_every_variable_and_no_secret_default(
    command: str, settings: type[McSettings] | type[GcSettings]
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "darktower", command, "--help"],
        env=darktower_env({"COLUMNS": "200"}),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    prefix = command.upper() + "_"
    lines = {line.strip().split("=", 1)[0]: line.strip() for line in result.stdout.splitlines()}
    for name, field in settings.model_fields.items():
        variable = f"{prefix}{name.upper()}"
        assert variable in lines, result.stdout
        if "secret" in str(field.annotation).lower():
            assert lines[variable].startswith(f"{variable}=(secret) "), lines[variable]
    assert "redis://127.0.0.1" not in result.stdout
    assert "sqlite+aiosqlite:///darktower-gc.db" not in result.stdout


# -- a start that fails part-way stops what it started ------------------------------------


def assert_free(bind: str) -> None:
    """Nothing listens on `bind` any more: it can be bound (without SO_REUSEPORT)."""
    host, port = parse_bind(bind)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen()


async def test_an_mc_whose_health_port_is_taken_leaves_nothing_listening(
    redis_url: str, key_dir: Path, held_port: int
) -> None:
    settings = mc_settings(redis_url, key_dir, health_bind=f"127.0.0.1:{held_port}")
    app = McApp(settings)
    with pytest.raises(StartupError, match=r"\(MC health HTTP\): address already in use"):
        await app.start()
    # The gRPC and client servers had started: both must have been stopped.
    assert_free(settings.grpc_bind)
    assert_free(settings.client_bind)
    assert not app.controller.running


async def test_a_gc_whose_http_port_is_taken_leaves_nothing_listening(
    tmp_path: Path, key_dir: Path, held_port: int
) -> None:
    values = gc_values(tmp_path, key_dir) | {"GC_HTTP_BIND": f"127.0.0.1:{held_port}"}
    settings = GcSettings(**{k.removeprefix("GC_").lower(): v for k, v in values.items()})
    app = GcApp(settings)
    with pytest.raises(StartupError, match=r"\(GC HTTP\): address already in use"):
        await app.start()
    assert_free(settings.grpc_bind)


async def test_the_health_server_logs_the_port_it_bound(
    redis_url: str, key_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = McApp(mc_settings(redis_url, key_dir, health_bind="127.0.0.1:0"))
    with caplog.at_level(logging.INFO):
        await app.start()
        try:
            assert app._http is not None
            port = app._http.port
            assert port != 0
            messages = [r.getMessage() for r in caplog.records]
            assert f"serving MC health HTTP on http://127.0.0.1:{port}" in messages, messages
            started = [m for m in messages if m.startswith("MC mc-start serving gRPC")]
            assert started and f"health on http://127.0.0.1:{port}" in started[0], started
            assert not any("127.0.0.1:0" in m for m in messages), messages
        finally:
            await app.stop(deadline_seconds=2)


async def test_the_gc_http_server_logs_the_port_it_bound(
    tmp_path: Path, key_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    values = gc_values(tmp_path, key_dir) | {"GC_HTTP_BIND": "127.0.0.1:0"}
    app = GcApp(GcSettings(**{k.removeprefix("GC_").lower(): v for k, v in values.items()}))
    with caplog.at_level(logging.INFO):
        await app.start()
        try:
            assert app.http_port != 0
            messages = [r.getMessage() for r in caplog.records]
            assert f"serving GC HTTP on http://127.0.0.1:{app.http_port}" in messages, messages
            assert not any("127.0.0.1:0" in m for m in messages), messages
        finally:
            await app.stop()
