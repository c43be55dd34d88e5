"""What `darktower dev` prints once the fleet is up: every process with its pid and ports, where
the logs are, and a first command that works as typed."""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Callable, Sequence

from rich.table import Table

from darktower.dev.fleet import Fleet
from darktower.dev.state import FleetRecord

__all__ = ["closing_lines", "darktower_command", "fleet_table"]


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def darktower_command(
    argv0: str,
    executable: str,
    *,
    cwd: str,
    which: Callable[[str], str | None] = shutil.which,
) -> str:
    """How to run `darktower` the way this process was started.

    Started as a console script (`.venv/bin/darktower dev`): that path as typed, or a bare
    `darktower` when that is what PATH finds. Started as `python -m darktower`: this
    interpreter, relative to `cwd` when it lies below it, then `-m darktower`."""
    if os.path.basename(argv0) == "darktower":
        on_path = which("darktower")
        if on_path and _same_file(on_path, os.path.join(cwd, argv0)):
            return "darktower"
        return shlex.quote(argv0)
    python = executable
    relative = os.path.relpath(executable, cwd) if os.path.isabs(executable) else executable
    if not relative.startswith(os.pardir):
        python = relative if os.sep in relative else os.path.join(os.curdir, relative)
    return f"{shlex.quote(python)} -m darktower"


def fleet_table(fleet: Fleet) -> Table:
    """One row per process: name, pid, its ports (all on 127.0.0.1), the MHs' zones. A real
    MH's row has its Janus client endpoint (`Janus WS`: ws://127.0.0.1:<port>)."""
    table = Table(title="darktower dev fleet (ports on 127.0.0.1)")
    for column in ("process", "pid", "ports", "zone"):
        table.add_column(column)
    if fleet.redis is not None:
        table.add_row("redis", str(fleet.redis.pid), f"redis {fleet.redis.port}", "")
    else:
        where = fleet.effective_redis_url.rsplit("@", 1)[-1]  # never print a password
        table.add_row("redis", "", f"given: {where}", "")
    for service in fleet.services:
        ports = "  ".join(f"{label} {port}" for label, port in service.ports.items())
        table.add_row(service.name, str(service.process.pid), ports or "-", service.zone)
    return table


def closing_lines(
    fleet: Fleet, command: str, *, restart: bool, others: Sequence[FleetRecord] = ()
) -> list[str]:
    """The lines under the table; the `try:` line is a command to copy as it is."""
    gc_url = fleet.gc_url
    join = f"{command} join standup"
    lines = [
        f"dashboard: {gc_url}/   join page: {gc_url}/join",
        f"logs: {fleet.logs}",
    ]
    if fleet.real_mhs:
        lines.append("media: Janus in each MH; open the join page in two tabs, same meeting")
    elif fleet.mhs:
        lines.append("media: none (simulated MHs, signaling only)")
    if others:
        listed = ", ".join(f"pid {o.pid} at {o.gc_url}" for o in others)
        lines.append(f"other dev fleets running: {listed}")
        join += f" --gc-url {gc_url}"
    lines.append(f"try: {join}")
    if restart:
        lines.append("A dead MC or MH is restarted (1 s backoff, doubling to 30 s).")
    else:
        lines.append("A dead MC or MH stays dead (watch the failover; --restart restarts it).")
    lines.append("The fleet stops if its Redis or GC dies; Ctrl-C stops it. Logs stay.")
    return lines
