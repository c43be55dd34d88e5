"""A real coturn (`turnserver`) for the TURN tests: on 127.0.0.1 only, no configuration file, no
CLI, no TLS, checking the TURN REST API credentials of `secret`; its files in `work`."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

TURNSERVER = shutil.which("turnserver")


def start_turnserver(
    work: Path,
    *,
    secret: str,
    port: int,
    relay_ports: tuple[int, int],
    loopback_peers: bool = False,
) -> subprocess.Popen[bytes]:
    """Start it and return once it is ready (its user database open); a server that exits or
    is not ready within 10 s is killed and raises RuntimeError with its log."""
    low, high = relay_ports
    log_path = work / "turnserver.log"
    with log_path.open("wb") as log:
        turn = subprocess.Popen(
            [
                TURNSERVER or "turnserver",
                "-n",  # no configuration file
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
                f"--listening-port={port}",
                f"--min-port={low}",
                f"--max-port={high}",
                "--use-auth-secret",
                f"--static-auth-secret={secret}",
                "--realm=darktower.test",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                *(["--allow-loopback-peers"] if loopback_peers else []),
                f"--pidfile={work / 'turnserver.pid'}",
                f"--userdb={work / 'turndb'}",
                "--log-file=stdout",
                "--simple-log",
            ],
            cwd=work,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 10
    while b"DB connection success" not in log_path.read_bytes():
        if turn.poll() is not None or time.monotonic() > deadline:
            turn.kill()
            turn.wait(timeout=10)
            raise RuntimeError(f"turnserver did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.1)
    return turn
