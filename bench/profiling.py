"""Profiling: py-spy on a service process in segments (`Profile`, only with `--profile DIR`),
its raw stacks summarized by library and hot function (`summarize_profile`), and the CPU a
process used inside a block (`cpu_window`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.context import BenchContext
from darktower.runtime.processes import ManagedProcess

__all__ = ["Profile", "cpu_window", "summarize_profile"]

log = logging.getLogger(__name__)

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
    "join (darktower/gc/join",
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
    (`<label>-<n>.txt`), py-spy's own output (`<label>-<n>.log`) and the summary
    (`<label>.json`) in DIR. py-spy runs as a `ManagedProcess`, so it dies with the runner
    even when the runner is SIGKILLed in the middle of a segment."""

    def __init__(self, ctx: BenchContext, label: str, pid: int) -> None:
        self.label = label
        self._pid = pid
        self._dir = ctx.profile_dir
        self._exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self._proc: ManagedProcess | None = None
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
        self._proc = ManagedProcess.start(
            [
                self._exe, "record", "--pid", str(self._pid), "--duration", "600",
                "--rate", "250", "--format", "raw", "--nonblocking", "--output", str(out),
            ],
            log_path=out.with_suffix(".log"),
            name=f"py-spy {self.label}",
            truncate_log=True,
        )  # fmt: skip
        await asyncio.sleep(0.3)  # attaching takes a moment

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop the segment: py-spy writes its output on SIGINT."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            await asyncio.to_thread(proc.wait, timeout)
        except subprocess.TimeoutExpired:
            await asyncio.to_thread(proc.kill)
            self.errors.append("py-spy did not stop")
            return
        if not self._files[-1].exists():
            self.errors.append(proc.log()[-300:])

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
