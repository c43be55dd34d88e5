"""A real MC (`darktower mc` in a subprocess) keeps flat memory under 200 concurrent oversized
unauthenticated calls: the refusal needs only the metadata, so the bodies are never read.

The security review measured 129 → 692 MiB for this attack before the fix. The numbers of each
run are printed (run with `-s` to see them) and bounded by the assertion.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import grpc.aio
import psutil
import pytest

from darktower.auth.grpc_server import MAX_RECEIVE_MESSAGE_BYTES
from darktower.auth.interceptor import UNAUTHENTICATED_MESSAGE
from darktower.auth.keys import generate_instance_key_files
from darktower.embedded.redis import free_port
from darktower.runtime.processes import ManagedProcess
from tests.support.processes import start_darktower

CALLS = 200
FOUR_MIB = 4 * 1024 * 1024
ASSIGN = "/dark_tower.internal.MeetingControllerService/AssignMeetingWithMh"
# Generous: the MC's own allocator noise and gRPC's buffers. The unfixed server grew by
# hundreds of MiB (200 bodies of 4 MiB, each received and parsed).
MAX_GROWTH_MIB = 32
MIB = 1024 * 1024

pytestmark = pytest.mark.slow


@pytest.fixture
def mc(tmp_path: Path, redis_url: str) -> Iterator[tuple[ManagedProcess, int]]:
    generate_instance_key_files(tmp_path / "keys", service="gc", instance_id="gc-1")
    grpc_port, health_port = free_port(), free_port()
    env = {
        "MC_ID": "mc-mem-1",
        "MC_REDIS_URL": redis_url,
        "MC_GC_ENDPOINT": "",
        "MC_CLIENT_ENABLED": "false",
        "MC_TRUSTED_GC_KEY_FILES": str(tmp_path / "keys" / "gc-1.pub"),
        "MC_GRPC_BIND": f"127.0.0.1:{grpc_port}",
        "MC_HEALTH_BIND": f"127.0.0.1:{health_port}",
        "MC_LOG_LEVEL": "WARNING",
    }
    process = start_darktower(["mc"], log_path=tmp_path / "mc.log", env=env)
    with process:
        process.wait_ready_url(f"http://127.0.0.1:{health_port}/health/live", timeout=60)
        yield process, grpc_port


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / MIB


class PeakRss:
    """Samples a process's RSS every 10 ms in a thread while in use; `peak` is the highest.
    (Large buffers are mmapped and handed back on free, so a reading after the flood alone
    could miss them.)"""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._stop = threading.Event()
        self.peak = rss_mib(pid)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_mib(self._pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


async def flood(port: int, body_bytes: int) -> list[tuple[grpc.StatusCode, str | None]]:
    """CALLS concurrent calls without a token, each with a body of `body_bytes`."""
    options = [("grpc.max_send_message_length", 2 * FOUR_MIB)]
    body = b"\x0a" + b"\xff" * (body_bytes - 1)  # a protobuf field header, then garbage
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        call = channel.unary_unary(ASSIGN, None, None)

        async def one() -> tuple[grpc.StatusCode, str | None]:
            try:
                await call(body, timeout=60)
            except grpc.aio.AioRpcError as exc:
                return exc.code(), exc.details()
            return grpc.StatusCode.OK, None

        return await asyncio.gather(*(one() for _ in range(CALLS)))


@pytest.mark.parametrize(
    "body_bytes",
    [FOUR_MIB, MAX_RECEIVE_MESSAGE_BYTES - 1024],
    ids=["4MiB-over-the-cap", "just-under-the-cap"],
)
def test_memory_stays_flat_under_oversized_unauthenticated_calls(
    mc: tuple[ManagedProcess, int], body_bytes: int
) -> None:
    process, port = mc
    before = rss_mib(process.pid)

    with PeakRss(process.pid) as sampled:
        codes = asyncio.run(flood(port, body_bytes))
        after_first = rss_mib(process.pid)
        codes += asyncio.run(flood(port, body_bytes))  # a second round: nothing accumulates
    after = rss_mib(process.pid)

    print(
        f"\nMC RSS, {CALLS} concurrent unauthenticated calls of {body_bytes} B, two rounds: "
        f"before {before:.1f} MiB, after round 1 {after_first:.1f} MiB, after round 2 "
        f"{after:.1f} MiB, peak {sampled.peak:.1f} MiB"
    )
    # Every call is refused by the token check (RESOURCE_EXHAUSTED would be the concurrency
    # cap, which 200 calls stay under): the flat memory is the check's doing.
    assert set(codes) == {(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)}
    assert len(codes) == 2 * CALLS
    assert sampled.peak - before < MAX_GROWTH_MIB, (before, sampled.peak, after)
    assert process.running, process.log_tail()
