"""One way to run a child process that must never outlive its owner.

`ManagedProcess.start()` runs a command in a session of its own (so a signal to its process
group reaches anything it starts), its stdout and stderr appended to a log file. Every wait is
bounded: `wait_ready()` polls a callable (or `wait_ready_url()` an HTTP URL) until it is true,
failing early with the log's tail if the process exits first; `wait()` waits for the exit.
`stop()` sends SIGTERM to the group, waits up to a grace period, then SIGKILLs the group and
reaps the process; `stop_all()` does the same for many at once under one deadline.

On Linux the child also asks the kernel (`prctl(PR_SET_PDEATHSIG, SIGKILL)`, between fork and
exec) to be killed when its parent dies, so an embedded `redis-server` or a dev-fleet MC is not
orphaned when its owner is SIGKILLed and never gets to run `stop()`. The kernel ties this to the
*thread* that forked the child: start long-lived processes from a thread that lives as long as
they should (the main thread, or a supervisor thread), never from a short-lived worker thread.
A child whose parent died between fork and the `prctl` call kills itself before exec.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx

__all__ = [
    "DEFAULT_STOP_GRACE_SECONDS",
    "ManagedProcess",
    "ProcessError",
    "ProcessExited",
    "ProcessNotReady",
    "parent_death_hook",
    "stop_all",
]

DEFAULT_STOP_GRACE_SECONDS = 10.0
_KILL_REAP_SECONDS = 10.0  # a SIGKILLed process is reaped well within this
_POLL_SECONDS = 0.05
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


class ProcessError(RuntimeError):
    """A managed process did not do what was waited for; the message names it and its log."""


class ProcessExited(ProcessError):
    """The process exited while something waited for it to become ready."""

    def __init__(self, message: str, returncode: int) -> None:
        super().__init__(message)
        self.returncode = returncode


class ProcessNotReady(ProcessError):
    """The readiness check did not pass within the timeout (the process still runs)."""


def parent_death_hook() -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess` that has the child SIGKILLed when the calling thread
    ends (Linux; None elsewhere), for a child started otherwise than by `ManagedProcess`
    (`subprocess.run` with captured output). Only a prctl and a getppid syscall run between
    fork and exec."""
    if _LIBC is None:
        return None
    parent_pid = os.getpid()
    prctl = _LIBC.prctl
    sig = int(signal.SIGKILL)

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before the prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


class ManagedProcess:
    """A started child process, its log file and how to wait for it and stop it."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path | None) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        *,
        log_path: Path | None,
        name: str = "",
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        die_with_parent: bool = True,
        truncate_log: bool = False,
    ) -> ManagedProcess:
        """Start `argv` in a new session, stdin from /dev/null, stdout and stderr appended to
        `log_path` (or discarded when None; `truncate_log` starts the file afresh).

        Raises OSError when the program cannot be started."""
        hook = parent_death_hook() if die_with_parent else None
        with contextlib.ExitStack() as stack:
            if log_path is None:
                out: int | object = subprocess.DEVNULL
            else:
                out = stack.enter_context(log_path.open("wb" if truncate_log else "ab"))
            popen = subprocess.Popen(
                list(argv),
                env=dict(env) if env is not None else None,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,  # type: ignore[arg-type]
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=hook,
            )
        return cls(name or Path(argv[0]).name, popen, log_path)

    # -- state -------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def poll(self) -> int | None:
        """None while the process runs, else its exit code (negative: killed by that signal)."""
        return self.popen.poll()

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        """Everything the process wrote so far ('' without a log file)."""
        if self.log_path is None:
            return ""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def _where(self) -> str:
        return f"; log {self.log_path}:\n{self.log_tail()}" if self.log_path else ""

    # -- waiting -----------------------------------------------------------------------------

    def wait_ready(
        self,
        check: Callable[[], bool],
        *,
        timeout: float,
        what: str = "ready",
        interval: float = _POLL_SECONDS,
    ) -> float:
        """Poll `check` until it returns True; the seconds it took. Raises ProcessExited when
        the process exits first, ProcessNotReady after `timeout` seconds."""
        started = time.monotonic()
        while True:
            if check():
                return time.monotonic() - started
            code = self.popen.poll()
            if code is not None:
                raise ProcessExited(
                    f"{self.name} (pid {self.pid}) exited with {code} before {what}"
                    + self._where(),
                    code,
                )
            if time.monotonic() - started > timeout:
                raise ProcessNotReady(
                    f"{self.name} (pid {self.pid}) not {what} within {timeout:g}s" + self._where()
                )
            time.sleep(interval)

    def wait_ready_url(
        self,
        url: str,
        *,
        timeout: float,
        interval: float = 0.1,
        verify: ssl.SSLContext | bool = True,
    ) -> float:
        """`wait_ready` until a GET of `url` answers 2xx (`verify`: what an https:// URL's
        certificate is checked against, as in httpx)."""

        def answers() -> bool:
            try:
                return httpx.get(url, timeout=2.0, verify=verify).is_success
            except httpx.HTTPError:
                return False

        return self.wait_ready(answers, timeout=timeout, what=f"answering {url}", interval=interval)

    def wait(self, timeout: float) -> int:
        """The exit code; subprocess.TimeoutExpired if still running after `timeout` seconds."""
        return self.popen.wait(timeout=timeout)

    # -- signals and stopping ----------------------------------------------------------------

    def send_signal(self, sig: int) -> None:
        """Send `sig` to the process only (not its group); nothing if it already exited."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def signal_group(self, sig: int) -> None:
        """Send `sig` to the process's group: the process and whatever it started."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, sig)

    def kill(self) -> int:
        """SIGKILL the group and reap the process; its exit code. A process reaped before
        is left alone (its pid, and so its group id, may belong to another process by now)."""
        if self.popen.returncode is None:
            self._sweep_group()
        return self.popen.wait(timeout=_KILL_REAP_SECONDS)

    def _sweep_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)

    def stop(self, grace: float = DEFAULT_STOP_GRACE_SECONDS) -> int:
        """SIGTERM the group, wait up to `grace` seconds, then SIGKILL the group; the exit
        code. A process reaped before is left alone."""
        stop_all([self], grace=grace)
        code = self.popen.returncode
        assert code is not None
        return code

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def stop_all(processes: Iterable[ManagedProcess], *, grace: float) -> None:
    """Stop many processes under one deadline: SIGTERM every group (in the order given), wait
    for each until `grace` seconds after the first signal, then SIGKILL what is left. Every
    process is reaped on return; the groups are swept with SIGKILL so nothing they started
    stays behind."""
    procs = [proc for proc in processes if proc.popen.returncode is None]  # not reaped yet
    for proc in procs:
        proc.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        proc._sweep_group()  # reaped just now: the group id is still its own
        proc.popen.wait(timeout=_KILL_REAP_SECONDS)
