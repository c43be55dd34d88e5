"""`darktower dev`: start the local fleet, print where everything runs, supervise it until
Ctrl-C (or until its Redis or GC dies)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from darktower.dev.fleet import Fleet, FleetPorts, PortInUse
from darktower.dev.report import closing_lines, darktower_command, fleet_table
from darktower.dev.state import FleetRecord, StateDir, StateDirError, state_dir_path
from darktower.dev.supervisor import Supervisor
from darktower.mh.janus_process import find_janus

__all__ = ["KEEP_LOG_DIRS", "choose_mhs", "dev"]

# Log directories of stopped fleets kept in the state directory; older ones are removed.
KEEP_LOG_DIRS = 10


def _say(message: str) -> None:
    typer.echo(f"darktower dev: {message}", err=True)


def choose_mhs(*, mhs: int, force_sim: bool, janus: str | None) -> tuple[bool, str]:
    """Real MHs (`darktower mh` with Janus) or simulated ones, and what to tell the user about
    it ("" when there is nothing to say: real MHs, or none at all)."""
    if mhs == 0:
        return False, ""
    if force_sim:
        return False, "simulated MHs (--mh-sim): signaling only, no audio or video"
    if janus is None:
        return False, (
            "janus is not installed (apt install janus): the MHs are simulated (mh-sim), "
            "signaling only, no audio or video"
        )
    return True, ""


def dev(
    mcs: Annotated[int, typer.Option(min=1, max=50, help="How many MCs to start.")] = 3,
    mhs: Annotated[int, typer.Option(min=0, max=50, help="How many MHs.")] = 4,
    mh_sim: Annotated[
        bool,
        typer.Option(
            "--mh-sim",
            help="Simulated MHs (signaling only, no audio or video) even when janus is "
            "installed; without janus they are simulated anyway.",
        ),
    ] = False,
    redis_url: Annotated[
        str | None, typer.Option(help="Use this Redis instead of an embedded one.")
    ] = None,
    db_url: Annotated[
        str | None, typer.Option(help="Use this database for the GC instead of SQLite.")
    ] = None,
    gc_http_port: Annotated[int, typer.Option(help="The GC's HTTP port.")] = 8080,
    any_port: Annotated[
        bool, typer.Option(help="Use free ports instead of the defaults (GC HTTP 8080, …).")
    ] = False,
    restart: Annotated[
        bool,
        typer.Option(help="Restart a dead MC or MH (same id and ports), with backoff 1 s → 30 s."),
    ] = False,
    tls: Annotated[
        bool,
        typer.Option(
            "--tls/--no-tls",
            help="gRPC between the services over TLS, with a CA and certificates made for the "
            "fleet (--no-tls: plaintext).",
        ),
    ] = True,
    webhook_url: Annotated[
        list[str] | None,
        typer.Option(
            "--webhook-url",
            help="POST the meetings' events, signed with the dev API key, to this http(s) URL "
            "(repeatable; off by default). `darktower webhook-receiver --key-file <the dev "
            "key>` verifies and prints them.",
        ),
    ] = None,
) -> None:
    """Run a local fleet in the foreground: Redis, a GC, MCs and MHs (`darktower mh` with
    Janus when `janus` is installed, else simulated ones).

    A dead MC or MH is reported and left dead (or restarted, with --restart); the fleet stops,
    exiting 1, if its Redis or GC dies. Logs stay in the directory it prints."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    try:
        state = StateDir(state_dir_path())
    except StateDirError as exc:
        _say(str(exc))
        raise typer.Exit(2) from None
    with state:
        state.forget_dead()
        state.prune_logs(keep=KEEP_LOG_DIRS)
        others = state.running()
        real_mhs, note = choose_mhs(mhs=mhs, force_sim=mh_sim, janus=find_janus())
        if note:
            _say(note)
        logs = state.make_log_dir(os.getpid())
        fleet = Fleet(
            mcs=mcs,
            mhs=mhs,
            redis_url=redis_url,
            db_url=db_url,
            ports=FleetPorts(gc_http=gc_http_port, any_free=any_port),
            workdir=logs,
            tls=tls,
            webhook_urls=tuple(webhook_url or ()),
            real_mhs=real_mhs,
        )
        _start(fleet, logs)
        started = time.time()

        def publish() -> None:
            state.publish(
                FleetRecord(
                    os.getpid(),
                    fleet.gc_url,
                    started,
                    str(logs),
                    fleet.processes(),
                    api_key_file=str(fleet.api_key_file),
                )
            )

        failure: str | None = None
        try:
            publish()
            Console().print(fleet_table(fleet))
            command = darktower_command(sys.argv[0], sys.executable, cwd=os.getcwd())
            for line in closing_lines(fleet, command, restart=restart, others=others):
                typer.echo(line)
            supervisor = Supervisor(fleet, restart=restart, say=_say, on_restart=publish)
            while failure is None and not stop.wait(supervisor.wait_seconds()):
                failure = supervisor.check()
        finally:
            state.remove(os.getpid())
            fleet.stop()
    if failure is not None:
        _say(f"{failure}; the fleet cannot go on without it and stopped. Logs: {logs}")
        raise typer.Exit(1)
    _say(f"stopped. Logs: {logs}")


def _start(fleet: Fleet, logs: Path) -> None:
    """Start the fleet or exit 2: nothing left running, the logs kept if there are any."""
    try:
        fleet.start()
    except PortInUse as exc:
        fleet.stop()
        logs.rmdir()  # nothing was started, nothing was written
        _say(str(exc))
        raise typer.Exit(2) from None
    except RuntimeError as exc:
        fleet.stop()
        _say(f"{exc}; the fleet stopped. Logs: {logs}")
        raise typer.Exit(2) from None
