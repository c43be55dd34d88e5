"""Running `darktower` commands in-process (typer's CliRunner) for the CLI tests, and the
meeting ids every command must refuse before it sends anything.

`invoke_in_thread` runs the command in a worker thread, so that a fleet served by the test's
own event loop (`tests.client.in_process_fleet`) keeps answering while the command waits for
it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from typer.testing import CliRunner, Result

from darktower.cli import app

__all__ = ["BAD_MEETING_IDS", "invoke", "invoke_in_thread"]

# id → the reason the CLI prints for it.
BAD_MEETING_IDS: Mapping[str, str] = {
    "": "must not be empty",
    "a/b": "must be letters, digits, '-' or '_'",
    "..": "must be letters, digits, '-' or '_'",
    "a b": "must be letters, digits, '-' or '_'",
    "%2e%2e": "must be letters, digits, '-' or '_'",
    "a?b=c": "must be letters, digits, '-' or '_'",
    "line\nbreak": "must be letters, digits, '-' or '_'",
    "é": "must be letters, digits, '-' or '_'",
    "x" * 256: "must be at most 255 bytes",
}

_runner = CliRunner()


def invoke(*args: str, columns: int = 80) -> Result:
    """`darktower ARGS` in this thread, on a terminal `columns` wide, without a GC URL from
    the environment (tests pass --gc-url)."""
    env = {"COLUMNS": str(columns), "DARKTOWER_GC_URL": None}
    return _runner.invoke(app, list(args), env=env, catch_exceptions=False)


async def invoke_in_thread(*args: str, columns: int = 80) -> Result:
    """`invoke` in a worker thread, leaving the test's event loop free to serve the fleet."""
    return await asyncio.to_thread(invoke, *args, columns=columns)
