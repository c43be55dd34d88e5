"""Running `darktower mc` / `darktower gc` as real processes in tests: environments without
inherited settings, a run expected to fail at start, and the shape of its stderr.

Every process runs in a session of its own and is bounded in time; `ServiceProcess.close()`
kills what is still running, so none outlives a test, and on Linux each dies with the test
process (`darktower.runtime.processes`).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from darktower.auth.fleet_keys import generate_fleet_keys
from darktower.embedded.redis import free_port
from darktower.runtime.processes import ManagedProcess, ProcessError, parent_death_hook

__all__ = [
    "START_TIMEOUT_S",
    "ServiceProcess",
    "darktower_env",
    "gc_values",
    "mc_values",
    "run_to_exit",
    "stderr_shape",
]

START_TIMEOUT_S = 30.0  # generous: a loaded 2-core machine starts Python slowly
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


def darktower_env(values: Mapping[str, str]) -> dict[str, str]:
    """This environment without any inherited `MC_*`/`GC_*` variable, the venv's `darktower`
    first on PATH, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MC_", "GC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(values)
    return env


def mc_values(redis_url: str, key_dir: Path) -> dict[str, str]:
    """A standalone MC (`mc-start`) on free loopback ports, trusting the GC keys of `key_dir/gc`
    (one per instance, made here when missing)."""
    keys = generate_fleet_keys(key_dir, gcs=["gc-start"], mcs=["mc-start"])
    return {
        "MC_ID": "mc-start",
        "MC_GRPC_BIND": f"127.0.0.1:{free_port()}",
        "MC_HEALTH_BIND": f"127.0.0.1:{free_port()}",
        "MC_CLIENT_BIND": f"127.0.0.1:{free_port()}",
        "MC_BINDING_TOKEN_SECRET": "test-binding-secret-3f9a1c",
        "MC_REDIS_URL": redis_url,
        "MC_GC_ENDPOINT": "",
        "MC_SERVICE_KEY_FILE": str(keys.key("mc", "mc-start")),
        "MC_TRUSTED_GC_KEY_FILES": str(keys.trusted("gc")),
    }


def gc_values(tmp_path: Path, key_dir: Path) -> dict[str, str]:
    """A GC (`gc-start`) on a SQLite file in `tmp_path`, on free loopback ports, with its own
    bound key and trusting the MC and MH keys of `key_dir/mc` and `key_dir/mh`."""
    keys = generate_fleet_keys(key_dir, gcs=["gc-start"], mcs=["mc-start"], mhs=["mh-start"])
    return {
        "GC_ID": "gc-start",
        "GC_GRPC_BIND": f"127.0.0.1:{free_port()}",
        "GC_HTTP_BIND": f"127.0.0.1:{free_port()}",
        "GC_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'gc.sqlite3'}",
        "GC_SERVICE_KEY_FILE": str(keys.key("gc", "gc-start")),
        "GC_TRUSTED_MC_KEY_FILES": str(keys.trusted("mc")),
        "GC_TRUSTED_MH_KEY_FILES": str(keys.trusted("mh")),
    }


def run_to_exit(
    command: str, values: Mapping[str, str], cwd: Path, timeout: float = START_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """`python -m darktower <command>` expected to exit by itself (killed after `timeout`)."""
    return subprocess.run(
        [sys.executable, "-m", "darktower", command],
        env=darktower_env(values),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
        preexec_fn=parent_death_hook(),  # only a prctl syscall between fork and exec
        cwd=cwd,
        check=False,
    )


def stderr_shape(stderr: str) -> tuple[list[str], list[str]]:
    """(the `darktower …:` lines, every line that is neither one nor a log record)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("darktower ")]
    other = [
        line for line in lines if not line.startswith("darktower ") and not _LOG_LINE.match(line)
    ]
    return ours, other


@dataclass
class ServiceProcess:
    """A service started from a shell command line (a `ManagedProcess`), its output in a file."""

    process: ManagedProcess

    @classmethod
    def shell(cls, script: str, env: Mapping[str, str], cwd: Path) -> ServiceProcess:
        return cls(
            ManagedProcess.start(
                ["bash", "-c", script],
                log_path=cwd / "service.stderr.log",
                env=env,
                cwd=cwd,
                name="service",
                truncate_log=True,
            )
        )

    @property
    def proc(self) -> ManagedProcess:
        return self.process

    @property
    def log_path(self) -> Path:
        assert self.process.log_path is not None
        return self.process.log_path

    def log(self) -> str:
        return self.process.log()

    def wait_live(self, url: str, timeout: float = START_TIMEOUT_S) -> None:
        try:
            self.process.wait_ready_url(url, timeout=timeout)
        except ProcessError as exc:
            raise AssertionError(str(exc)) from None

    def command_line(self) -> list[str]:
        """The argv of the process itself (bash execs the last command of a script)."""
        raw = Path(f"/proc/{self.process.pid}/cmdline").read_bytes()
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]

    def terminate(self, timeout: float) -> int:
        """SIGTERM the process; its exit code within `timeout` seconds."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {timeout}s after SIGTERM:\n{self.log()}") from None

    def close(self) -> None:
        """SIGKILL the whole session if anything of it still runs; reap it."""
        self.process.kill()
