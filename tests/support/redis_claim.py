"""One test run per Redis database: a run claims the database it was given for its whole session.

Every test flushes its database and the fleets of different tests reuse the same meeting ids
("standup") and MC ids ("mc-1"), so two runs pointed at one database (two shells, two
sessions, two `.ci/run`s with `DARKTOWER_TEST_REDIS_URL=redis://…/15`) flush each other's state
and take over each other's meetings: the failures then look like product bugs (duplicate
participants, a resumed session that comes back under a new correlation id) and are not.

The claim is an exclusive `flock` on a file in the temporary directory named after the
database's host, port and number, held by the pytest process until it exits (the kernel drops
it even when the run is killed). A second run on this machine finds it held and stops at once,
naming the holder. Nothing is written to Redis, so tests that count keys are unaffected; runs on
other machines sharing the Redis are not seen.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["DatabaseInUse", "claim_database", "claim_path"]


class DatabaseInUse(RuntimeError):
    """Another test run on this machine holds the database."""


def claim_path(url: str) -> Path:
    """The lock file of the database `url` names (`redis://host:port/db`, db 0 by default)."""
    parts = urlsplit(url)
    db = parts.path.strip("/") or "0"
    name = f"darktower-test-redis-{parts.hostname or 'localhost'}-{parts.port or 6379}-{db}.lock"
    return Path(tempfile.gettempdir()) / name


@contextlib.contextmanager
def claim_database(url: str) -> Iterator[None]:
    """Hold the database `url` for this process until the block ends; DatabaseInUse when
    another process holds it."""
    path = claim_path(url)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        writable = True
    except PermissionError:  # created by another user: a read-only descriptor can still lock
        fd = os.open(path, os.O_RDONLY)
        writable = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            raise DatabaseInUse(
                f"{url} is in use by another test run ({holder}, lock {path}); give this run "
                "a Redis database of its own (DARKTOWER_TEST_REDIS_URL=redis://host:port/<n>)"
            ) from None
        if writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
