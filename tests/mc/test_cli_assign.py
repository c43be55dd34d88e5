"""`darktower assign` against an in-process MC: the operator's probe works end to end."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import redis.asyncio as aioredis

from tests.support.mc import RunningMc


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "darktower",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_assign_command_places_a_meeting(
    mc: RunningMc, key_dir: Path, redis_client: aioredis.Redis
) -> None:
    target = f"127.0.0.1:{mc.app.grpc_port}"
    code, out, _ = await run_cli(
        "assign",
        "cli-meeting",
        "--key",
        str(key_dir / "gc.key"),
        "--mc",
        target,
        "--mc-id",
        "mc-test",
    )
    assert code == 0
    assert json.loads(out) == {"accepted": True, "rejection_reason": "REJECTION_REASON_UNSPECIFIED"}
    assert await redis_client.get("meeting:{cli-meeting}:owner") == b"mc-test"


async def test_assign_with_a_non_gc_key_is_refused(mc: RunningMc, key_dir: Path) -> None:
    target = f"127.0.0.1:{mc.app.grpc_port}"
    code, _, err = await run_cli("assign", "m", "--key", str(key_dir / "mc.key"), "--mc", target)
    assert code == 1
    assert "UNAUTHENTICATED" in err
