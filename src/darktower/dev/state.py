"""Where running `darktower dev` fleets announce themselves: one file per fleet.

The state directory (`DARKTOWER_DEV_STATE`, else `<tmp>/darktower-dev-<uid>`) is private —
0700, owned by this user, never a symlink — and holds::

    <pid>.json                 a running fleet: pid, GC URL, start time, log directory, pids
    <YYYYmmdd-HHMMSS>-<pid>/   that fleet's logs and GC database, kept after it stops

Every operation goes through a descriptor of the verified directory (`dir_fd`) and opens with
O_NOFOLLOW, so a symlink planted in the directory, or the directory itself being a symlink, is
never followed. A fleet writes its file under a fresh temporary name (O_EXCL, 0600) and renames
it into place, and removes only its own file. Readers skip whatever is not a regular file owned
by this user, does not parse, or names a process that is not alive (a fleet killed with -9).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType

import psutil

__all__ = [
    "STATE_ENV",
    "FleetRecord",
    "StateDir",
    "StateDirError",
    "choice_notes",
    "running_dev_fleet",
    "running_dev_gc_url",
    "running_fleets",
    "state_dir_path",
]

STATE_ENV = "DARKTOWER_DEV_STATE"
MAX_RECORD_BYTES = 64 * 1024
_RECORD_NAME = re.compile(r"^(\d+)\.json$")
_LOG_DIR_NAME = re.compile(r"^\d{8}-\d{6}-(\d+)$")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class StateDirError(RuntimeError):
    """The state directory is unsafe to use (a symlink, someone else's, open to others)."""


def state_dir_path() -> Path:
    """`DARKTOWER_DEV_STATE` if set, else a per-user directory in the system's temp dir."""
    override = os.environ.get(STATE_ENV)
    if override:
        return Path(override)
    return Path(tempfile.gettempdir()) / f"darktower-dev-{os.getuid()}"


@dataclass(frozen=True)
class FleetRecord:
    """What a running fleet publishes about itself (no secrets: URLs without credentials)."""

    pid: int
    gc_url: str
    started: float  # time.time() at start; the newest fleet is the default one
    logs: str
    processes: dict[str, int] = field(default_factory=dict)  # name -> pid
    # The fleet's API key file (a path, never the secret): commands mint access tokens with it.
    api_key_file: str | None = None

    @classmethod
    def parse(cls, raw: bytes) -> FleetRecord | None:
        try:
            data = json.loads(raw)
            record = cls(
                pid=data["pid"],
                gc_url=data["gc_url"],
                started=data["started"],
                logs=data["logs"],
                processes=data.get("processes", {}),
                api_key_file=data.get("api_key_file"),
            )
        except (ValueError, KeyError, TypeError):
            return None
        well_typed = (
            isinstance(record.pid, int)
            and isinstance(record.gc_url, str)
            and record.gc_url.startswith(("http://", "https://"))
            and isinstance(record.started, int | float)
            and isinstance(record.logs, str)
            and isinstance(record.processes, dict)
            and all(isinstance(k, str) and isinstance(v, int) for k, v in record.processes.items())
            and (record.api_key_file is None or isinstance(record.api_key_file, str))
        )
        return record if well_typed else None


def pid_alive(pid: int) -> bool:
    """True while `pid` runs and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError):
        return False


def choice_notes(fleets: Sequence[FleetRecord]) -> list[str]:
    """What `join`/`status` say about the fleet they picked (`fleets` newest first)."""
    if not fleets:
        return []
    chosen = fleets[0]
    notes = [f"using the dev fleet pid {chosen.pid} at {chosen.gc_url}"]
    if len(fleets) > 1:
        others = ", ".join(f"pid {f.pid} at {f.gc_url}" for f in fleets[1:])
        notes.append(
            f"{len(fleets)} dev fleets are running; the newest is used, the others are {others}"
            " — pass --gc-url URL to pick one"
        )
    return notes


class StateDir:
    """An open, verified state directory; use as a context manager."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, 0o700)
        try:
            self._fd = os.open(path, _DIR_FLAGS)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise StateDirError(
                f"refusing the dev state directory {path}: a symlink or not a directory"
            ) from exc
        st = os.fstat(self._fd)
        problem = None
        if st.st_uid != os.getuid():
            problem = f"owned by uid {st.st_uid}, not by you"
        elif st.st_mode & 0o077:
            problem = f"open to others (mode {stat.S_IMODE(st.st_mode):o}; chmod 700 it)"
        if problem:
            os.close(self._fd)
            raise StateDirError(
                f"refusing the dev state directory {path}: {problem}; "
                f"set {STATE_ENV} to a private directory"
            )

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> StateDir:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- fleet records -------------------------------------------------------------------

    def publish(self, record: FleetRecord) -> None:
        """Write `<pid>.json` atomically: a fresh 0600 file, then a rename over the old one."""
        temp = f".{record.pid}.{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temp, flags, 0o600, dir_fd=self._fd)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(json.dumps(asdict(record)).encode())
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, f"{record.pid}.json", src_dir_fd=self._fd, dst_dir_fd=self._fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=self._fd)
            raise

    def remove(self, pid: int) -> None:
        """Remove this fleet's own file (and nothing else)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{pid}.json", dir_fd=self._fd)

    def records(self) -> list[FleetRecord]:
        """Every well-formed record, alive or not."""
        found = []
        for name in os.listdir(self._fd):
            match = _RECORD_NAME.match(name)
            if match and (record := self._read(name)) and record.pid == int(match.group(1)):
                found.append(record)
        return found

    def running(self) -> list[FleetRecord]:
        """Records of fleets still running, newest first."""
        alive = [r for r in self.records() if pid_alive(r.pid)]
        return sorted(alive, key=lambda r: (r.started, r.pid), reverse=True)

    def forget_dead(self) -> None:
        """Remove the records that fleets killed without a chance to clean up left behind."""
        for record in self.records():
            if not pid_alive(record.pid):
                self.remove(record.pid)

    def _read(self, name: str) -> FleetRecord | None:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, dir_fd=self._fd)
        except OSError:
            return None  # a symlink (ELOOP), gone meanwhile, unreadable
        with os.fdopen(fd, "rb") as file:
            st = os.fstat(file.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
                return None
            return FleetRecord.parse(file.read(MAX_RECORD_BYTES + 1))

    # -- log directories -----------------------------------------------------------------

    def make_log_dir(self, pid: int, now: float | None = None) -> Path:
        """A new private directory for one fleet's logs, named by its start time and pid."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
        name = f"{stamp}-{pid}"
        os.mkdir(name, 0o700, dir_fd=self._fd)
        return self.path / name

    def prune_logs(self, keep: int) -> list[str]:
        """Remove the log directories of stopped fleets but the newest `keep`; their names."""
        stopped = []
        for name in sorted(os.listdir(self._fd), reverse=True):
            match = _LOG_DIR_NAME.match(name)
            if not match or pid_alive(int(match.group(1))):
                continue
            with contextlib.suppress(OSError):
                if stat.S_ISDIR(os.stat(name, dir_fd=self._fd, follow_symlinks=False).st_mode):
                    stopped.append(name)
        removed = []
        for name in stopped[keep:]:
            with contextlib.suppress(OSError):
                shutil.rmtree(name, dir_fd=self._fd)  # fd-based: never leaves the directory
                removed.append(name)
        return removed


def running_fleets(path: Path | None = None) -> list[FleetRecord]:
    """Running fleets, newest first; none when the directory does not exist.

    Raises StateDirError when the directory is unsafe to read."""
    try:
        with StateDir(path or state_dir_path(), create=False) as state:
            return state.running()
    except FileNotFoundError:
        return []


def running_dev_gc_url(say: Callable[[str], None]) -> str | None:
    """The GC URL of the newest running `darktower dev`, if any; `say` is told which fleet that
    is, which others run, and why the state directory was ignored if it was."""
    try:
        fleets = running_fleets()
    except StateDirError as exc:
        say(f"{exc}; not looking for a dev fleet there")
        return None
    for note in choice_notes(fleets):
        say(note)
    return fleets[0].gc_url if fleets else None


def running_dev_fleet(say: Callable[[str], None]) -> FleetRecord | None:
    """The newest running `darktower dev` fleet's record, if any (`say` as above)."""
    try:
        fleets = running_fleets()
    except StateDirError as exc:
        say(f"{exc}; not looking for a dev fleet there")
        return None
    for note in choice_notes(fleets):
        say(note)
    return fleets[0] if fleets else None
