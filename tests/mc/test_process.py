"""Real `darktower mc` processes: signals and graceful stop, readiness that follows Redis,
secrets kept out of every output, and startup errors that are one clear line."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis

from darktower.embedded.redis import EmbeddedRedis, find_redis_server, free_port
from darktower.runtime.processes import ManagedProcess
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc
from tests.mc.processes import McProcess, McProcesses, mc_command, mc_env
from tests.support.mc import assign_request
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

Metadata = tuple[tuple[str, str], ...]

REDIS_PASSWORD = "pw-Sup3rSecret-7f3a"
BINDING_SECRET = "bind-S3cret-9c1e"


@pytest.fixture
def processes(tmp_path: Path, key_dir: Path) -> Iterator[McProcesses]:
    started = McProcesses(tmp_path, key_dir / "gc.pub")
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def embedded_redis() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


def assign(
    mc: McProcess, meeting_id: str, metadata: Metadata | None
) -> pb.AssignMeetingWithMhResponse:
    with grpc.insecure_channel(mc.grpc_target) as channel:
        stub = pb_grpc.MeetingControllerServiceStub(channel)
        return stub.AssignMeetingWithMh(assign_request(meeting_id), metadata=metadata, timeout=10)


def assign_error(
    mc: McProcess, request: pb.AssignMeetingWithMhRequest, metadata: Metadata | None
) -> grpc.RpcError:
    with grpc.insecure_channel(mc.grpc_target) as channel:
        stub = pb_grpc.MeetingControllerServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.AssignMeetingWithMh(request, metadata=metadata, timeout=10)
    return caught.value


def stop(mc: McProcess, sig: signal.Signals, *, within: float) -> float:
    """Send `sig`, assert exit code 0 within `within` seconds; the time it took."""
    sent = time.monotonic()
    mc.send_signal(sig)
    try:
        code = mc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"MC still running {within}s after {sig.name}:\n{mc.log()}") from None
    assert code == 0, mc.log()
    return time.monotonic() - sent


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_stops_gracefully_and_exits_zero(
    processes: McProcesses,
    embedded_redis: EmbeddedRedis,
    gc_metadata: Metadata,
    sig: signal.Signals,
) -> None:
    drain_seconds = 5
    mc = processes.start(embedded_redis.url, drain_seconds=str(drain_seconds))
    answers = [assign(mc, f"graceful-{i}", gc_metadata) for i in range(3)]
    assert [a.accepted for a in answers] == [True, True, True]
    with redis.Redis.from_url(embedded_redis.url) as client:
        assert client.get("meeting:{graceful-2}:owner") == mc.mc_id.encode()

    stop(mc, sig, within=drain_seconds + 3)

    log = mc.log()
    assert f"MC {mc.mc_id} stopped" in log
    assert "Traceback" not in log


def test_readiness_follows_redis(processes: McProcesses, gc_metadata: Metadata) -> None:
    first = EmbeddedRedis().start()
    try:
        mc = processes.start(first.url, redis_check_seconds="0.2")
        wait_until(lambda: mc.status("/health/ready") == 200, timeout=5, what="ready")
        port, url = first.port, first.url
    finally:
        first.stop()

    wait_until(lambda: mc.status("/health/ready") == 503, timeout=5, what="503 without Redis")
    assert mc.get("/health/ready").json()["reason"] == "redis unreachable"
    refused = assign(mc, "while-down", gc_metadata)
    assert not refused.accepted
    assert refused.rejection_reason == pb.REJECTION_REASON_UNHEALTHY

    with EmbeddedRedis(port=port) as second:
        assert second.url == url
        wait_until(lambda: mc.status("/health/ready") == 200, timeout=5, what="ready again")
        answer = assign(mc, "after-restart", gc_metadata)
        assert answer.accepted, answer
        with redis.Redis.from_url(second.url) as client:
            assert client.get("meeting:{after-restart}:owner") == mc.mc_id.encode()
            assert client.get("meeting:{while-down}:owner") is None
    assert mc.proc.poll() is None, "the MC must survive the Redis outage"
    log = mc.log()
    assert "redis unreachable" in log
    assert log.rindex("redis reachable: ready") > log.index("redis unreachable")


def test_outage_first_seen_by_an_assignment_is_logged(
    processes: McProcesses, gc_metadata: Metadata
) -> None:
    server = EmbeddedRedis().start()
    try:
        # The periodic check will not run again during this test: the assignment sees it first.
        mc = processes.start(server.url, redis_check_seconds="30")
        assert assign(mc, "before", gc_metadata).accepted
    finally:
        server.stop()
    refused = assign(mc, "after", gc_metadata)
    assert refused.rejection_reason == pb.REJECTION_REASON_UNHEALTHY
    assert mc.get("/health/ready").json()["reason"] == "redis unreachable"
    wait_until(lambda: "redis unreachable" in mc.log(), timeout=1, what="the outage logged")


def start_password_redis(tmp_path: Path, port: int) -> ManagedProcess:
    argv = [
        find_redis_server(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(tmp_path),
        "--requirepass", REDIS_PASSWORD,
    ]  # fmt: skip
    proc = ManagedProcess.start(argv, log_path=None, name="redis-server (password)")

    def answers() -> bool:
        try:
            with redis.Redis(port=port, password=REDIS_PASSWORD, socket_timeout=0.5) as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        proc.wait_ready(answers, timeout=10, what="answering with its password")
    except BaseException:
        proc.kill()
        raise
    return proc


def test_secrets_never_appear_in_logs_metrics_or_errors(
    processes: McProcesses, tmp_path: Path, gc_metadata: Metadata
) -> None:
    port = free_port()
    secret_url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
    server = start_password_redis(tmp_path, port)
    try:
        mc = processes.start(
            secret_url, log_level="DEBUG", binding_token_secret=BINDING_SECRET, drain_seconds="3"
        )
        first = assign(mc, "before-outage", gc_metadata)
        assert first.accepted, first
    finally:
        server.kill()

    outputs: list[str] = [str(first)]
    for i in range(3):
        answer = assign(mc, f"during-outage-{i}", gc_metadata)
        assert not answer.accepted
        assert answer.rejection_reason == pb.REJECTION_REASON_UNHEALTHY
        outputs.append(str(answer))
    wait_until(lambda: mc.status("/health/ready") == 503, timeout=5, what="503 without Redis")
    metrics = mc.get("/metrics").text
    assert "mc_assignments_total" in metrics
    outputs += [metrics, mc.get("/health/ready").text, mc.get("/health/live").text]
    for request, metadata, code in [
        (assign_request(""), gc_metadata, grpc.StatusCode.INVALID_ARGUMENT),
        (assign_request("no-token"), None, grpc.StatusCode.UNAUTHENTICATED),
    ]:
        error = assign_error(mc, request, metadata)
        assert error.code() == code, error
        outputs += [error.details() or "", str(error)]
    stop(mc, signal.SIGTERM, within=10)
    log = mc.log()

    # The failure path really ran and was logged...
    assert "redis unreachable" in log, log
    # ...and no secret is anywhere.
    for text in [log, *outputs]:
        for secret in (REDIS_PASSWORD, secret_url, BINDING_SECRET):
            assert secret not in text, text


def run_mc_to_exit(tmp_path: Path, **values: str) -> subprocess.CompletedProcess[str]:
    """Run an MC expected to fail at startup (killed after 15 s if it does not)."""
    base = {
        "MC_ID": "mc-doomed",
        "MC_GRPC_BIND": f"127.0.0.1:{free_port()}",
        "MC_HEALTH_BIND": f"127.0.0.1:{free_port()}",
        "MC_GC_ENDPOINT": "",
    }
    return subprocess.run(
        mc_command(),
        env=mc_env(base | values),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=15,
        start_new_session=True,
        cwd=tmp_path,
        check=False,
    )


def test_secrets_never_appear_in_startup_errors(tmp_path: Path, key_dir: Path) -> None:
    secret_url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0"
    result = run_mc_to_exit(
        tmp_path,
        MC_REDIS_URL=secret_url,
        MC_MAX_MEETINGS="-1",
        MC_BINDING_TOKEN_SECRET=BINDING_SECRET,
        MC_TRUSTED_GC_KEY_FILES=str(key_dir / "gc.pub"),
    )
    assert result.returncode == 2, result.stderr
    assert "MC_MAX_MEETINGS" in result.stderr
    assert "Traceback" not in result.stderr
    for secret in (REDIS_PASSWORD, secret_url, BINDING_SECRET):
        assert secret not in result.stderr + result.stdout


def test_missing_trusted_keys_is_a_clear_startup_error(tmp_path: Path) -> None:
    result = run_mc_to_exit(tmp_path, MC_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "MC_TRUSTED_GC_KEY_FILES" in lines[0]
    assert "Traceback" not in result.stderr
