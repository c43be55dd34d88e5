"""`darktower roll`: a rolling restart of a running `darktower dev` fleet's MCs, one at a time.

For each MC, in id order: ask the GC to drain it (`POST /v1/controllers/{id}/drain`, with an
admin token minted with the fleet's API key), wait for its process to exit (its meetings move
live to the other MCs, README "Rolling upgrades"), wait for the fleet to start it again (a dev
fleet restarts an MC that drained and exited 0, with the same id and ports) and for the GC to
see it healthy, then print one line from its drain report: meetings migrated, ended, and the
longest hand-off (how long a meeting was frozen before its clients were redirected; the gap a
client sees adds its reconnection, measured by `python -m bench --only migration`).

Exit 0 when every MC came back with no meeting ended, 1 when a meeting was ended or an MC did
not come back in time, 2 when there is no dev fleet or its GC does not answer.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import psutil
import typer

from darktower.cli_support import UNREACHABLE_HINT, access_token_for
from darktower.dev.state import FleetRecord

__all__ = ["RollLine", "drain_line", "roll"]

# How long one MC may take to drain and exit (its MC_DRAIN_SECONDS is 30 at most in dev),
# and to be started again and seen healthy by the GC.
EXIT_TIMEOUT_S = 60.0
BACK_TIMEOUT_S = 60.0
POLL_S = 0.2

_DRAIN_LINE = re.compile(
    r"drain: (\d+) migrated, (\d+) ended, (\d+) failed \((\d+) clients redirected, "
    r"longest hand-off (\d+) ms\)"
)


@dataclass(frozen=True, slots=True)
class RollLine:
    migrated: int
    ended: int
    failed: int
    redirected: int
    longest_handoff_ms: int


def drain_line(log: str) -> RollLine | None:
    """The last drain report in an MC's log, if any."""
    found = _DRAIN_LINE.findall(log)
    if not found:
        return None
    return RollLine(*(int(v) for v in found[-1]))


def _say(text: str) -> None:
    typer.echo(f"darktower roll: {text}")


def _fail(text: str, code: int) -> typer.Exit:
    typer.echo(f"darktower roll: {text}", err=True)
    return typer.Exit(code)


def _controllers(http: httpx.Client, gc_url: str, token: str | None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = http.get(f"{gc_url}/v1/controllers", headers=headers)
    answer.raise_for_status()
    return {c["id"]: c for c in answer.json()}


def _wait(what: str, done: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(POLL_S)
    _say(f"gave up waiting for {what} after {timeout:g}s")
    return False


def roll(
    only: Annotated[
        list[str] | None, typer.Argument(help="MC ids to roll (default: every MC of the fleet).")
    ] = None,
) -> None:
    """Drain the MCs of the running `darktower dev` fleet one at a time; each comes back with
    the same id and ports once it has exited. Prints per MC: meetings migrated, ended, and the
    longest hand-off."""
    from darktower.dev.state import running_dev_fleet

    record = running_dev_fleet(lambda note: typer.echo(f"darktower: {note}", err=True))
    if record is None:
        raise _fail(f"no running dev fleet; {UNREACHABLE_HINT}", 2)
    gc_url = record.gc_url.rstrip("/")
    token = access_token_for(None, gc_url, identity="darktower-roll", admin=True)
    mcs = sorted(n for n in record.processes if n.startswith("mc-"))
    if only:
        unknown = sorted(set(only) - set(mcs))
        if unknown:
            raise _fail(f"not an MC of this fleet: {', '.join(unknown)}", 2)
        mcs = [m for m in mcs if m in only]
    ended_total = 0
    with httpx.Client(timeout=30.0, trust_env=False) as http:
        for mc_id in mcs:
            line = _roll_one(http, gc_url, token, record, mc_id)
            if line is not None:
                ended_total += line.ended + line.failed
    if ended_total:
        raise _fail(f"{ended_total} meetings ended during the roll", 1)
    _say(f"rolled {len(mcs)} MCs, no meeting ended")


def _roll_one(
    http: httpx.Client, gc_url: str, token: str | None, record: FleetRecord, mc_id: str
) -> RollLine | None:
    """Drain `mc_id`, wait for it to exit and come back; print and answer its drain report."""
    from darktower.dev.state import running_dev_fleet

    pid = record.processes[mc_id]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        answer = http.post(f"{gc_url}/v1/controllers/{mc_id}/drain", headers=headers)
    except httpx.HTTPError as exc:
        raise _fail(f"cannot reach the GC at {gc_url} ({type(exc).__name__})", 2) from None
    if answer.status_code != 202:
        raise _fail(f"the GC refused to drain {mc_id}: {answer.text[:300]}", 1)
    started = time.monotonic()
    _say(f"{mc_id}: draining ({answer.json()['meetings']} meetings)")
    if not _wait(f"{mc_id} to exit", lambda: not psutil.pid_exists(pid), EXIT_TIMEOUT_S):
        raise typer.Exit(1)

    def back() -> bool:
        try:
            seen = _controllers(http, gc_url, token).get(mc_id, {})
        except httpx.HTTPError:
            return False
        fresh = running_dev_fleet(lambda _note: None)
        restarted = fresh is not None and fresh.processes.get(mc_id) not in (None, pid)
        return restarted and seen.get("health") == "healthy"

    if not _wait(f"{mc_id} to come back healthy", back, BACK_TIMEOUT_S):
        raise typer.Exit(1)
    line = drain_line((Path(record.logs) / f"{mc_id}.log").read_text(errors="replace"))
    took = time.monotonic() - started
    if line is None:
        _say(f"{mc_id}: back after {took:.1f}s (no drain report in its log)")
        return None
    _say(
        f"{mc_id}: {line.migrated} meetings migrated, {line.ended} ended, {line.failed} failed, "
        f"{line.redirected} clients redirected, longest hand-off {line.longest_handoff_ms} ms; "
        f"back after {took:.1f}s"
    )
    return line
