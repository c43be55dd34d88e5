"""Scenarios that must not reach anything off this machine (WebRTC's ICE gathers candidates on
every interface) run in a network namespace of their own, started with `unshare --net`: as root a
network namespace is enough; otherwise `--map-root-user` makes one in a user namespace."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK_ONLY = "ip link set lo up"


def missing_tools(*needed: tuple[str, bool]) -> list[str]:
    """The names among `needed` (name, present) that are absent, `unshare` and `ip` included."""
    tools = (
        ("unshare", shutil.which("unshare") is not None),
        ("ip", shutil.which("ip") is not None),
    )
    return [name for name, present in (*needed, *tools) if not present]


def run_isolated(module: str, workdir: Path, *, setup: str, timeout: float) -> dict[str, Any]:
    """Run `python -m module workdir` in a fresh network namespace after the shell commands
    `setup` (which bring up its interfaces), and return the JSON document its last stdout line
    holds; a run that printed nothing fails with its exit status and stderr's tail."""
    command = f"{setup} && exec {sys.executable} -m {module} {workdir}"
    unshare = ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--map-root-user", "--net"]
    done = subprocess.run(
        [*unshare, "--", "sh", "-c", command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, f"no result (exit {done.returncode}): {done.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result
