"""Processes in tests: whether a pid is gone, and a `darktower` process started with the
managed-process helper (`darktower.runtime.processes`), its log under the test's directory."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from darktower.runtime.processes import ManagedProcess

__all__ = ["DARKTOWER", "clean_env", "pid_gone", "start_darktower"]

DARKTOWER = (sys.executable, "-m", "darktower")


def pid_gone(pid: int) -> bool:
    """True once `pid` no longer runs (a zombie waiting for its reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def clean_env(values: Mapping[str, str]) -> dict[str, str]:
    """This environment without inherited service settings (`MC_*`, `GC_*`,
    `DARKTOWER_GC_URL`), unbuffered Python, plus `values`."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MC_", "GC_", "DARKTOWER_GC_URL"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(values)
    return env


def start_darktower(
    args: Sequence[str], *, log_path: Path, env: Mapping[str, str], name: str = ""
) -> ManagedProcess:
    """`python -m darktower ARGS` with `clean_env(env)`, its output in `log_path`."""
    return ManagedProcess.start(
        [*DARKTOWER, *args],
        log_path=log_path,
        env=clean_env(env),
        name=name or args[0],
        truncate_log=True,
    )
