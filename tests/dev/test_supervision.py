"""The fleet's decisions when a child exits, and the command it suggests: pure tables."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from darktower.dev.report import darktower_command
from darktower.dev.state import FleetRecord, choice_notes
from darktower.dev.supervision import describe_exit, is_fatal, restart_attempt, restart_delay


@pytest.mark.parametrize(
    ("returncode", "said"),
    [
        (0, "exit status 0"),
        (1, "exit status 1"),
        (-9, "killed by SIGKILL"),
        (-15, "killed by SIGTERM"),
        (-11, "killed by SIGSEGV"),
        (-200, "killed by signal 200"),
    ],
)
def test_describe_exit(returncode: int, said: str) -> None:
    assert describe_exit(returncode) == said


@pytest.mark.parametrize(
    ("kind", "fatal"), [("redis", True), ("gc", True), ("mc", False), ("mh", False)]
)
def test_only_redis_and_the_gc_are_fatal(kind: str, fatal: bool) -> None:
    assert is_fatal(kind) is fatal


@pytest.mark.parametrize(
    ("attempt", "delay"),
    [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 30.0), (6, 30.0), (500, 30.0)],
)
def test_restart_backoff_doubles_up_to_the_cap(attempt: int, delay: float) -> None:
    assert restart_delay(attempt) == delay


def test_restart_backoff_rejects_a_negative_attempt() -> None:
    with pytest.raises(ValueError, match="attempt"):
        restart_delay(-1)


@pytest.mark.parametrize(
    ("in_a_row", "uptime", "attempt"),
    [
        (0, 0.5, 0),  # first death
        (3, 2.0, 3),  # dies again soon after its restart: the backoff grows
        (3, 29.9, 3),
        (5, 30.0, 0),  # had stayed up a full cap: a new failure, back to 1 s
        (5, 3600.0, 0),
    ],
)
def test_restart_attempt_resets_after_a_long_life(
    in_a_row: int, uptime: float, attempt: int
) -> None:
    assert restart_attempt(in_a_row, uptime) == attempt


def _record(pid: int, url: str) -> FleetRecord:
    return FleetRecord(pid=pid, gc_url=url, started=float(pid), logs="/l")


@pytest.mark.parametrize(
    ("fleets", "notes"),
    [
        ([], []),
        ([_record(7, "http://h:1")], ["using the dev fleet pid 7 at http://h:1"]),
        (
            [_record(9, "http://h:2"), _record(7, "http://h:1")],
            [
                "using the dev fleet pid 9 at http://h:2",
                "2 dev fleets are running; the newest is used, the others are pid 7 at "
                "http://h:1 — pass --gc-url URL to pick one",
            ],
        ),
    ],
)
def test_choice_notes(fleets: list[FleetRecord], notes: list[str]) -> None:
    assert choice_notes(fleets) == notes


def _script(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


def test_darktower_command(tmp_path: Path) -> None:
    venv_script = _script(tmp_path / ".venv" / "bin" / "darktower")
    other_script = _script(tmp_path / "elsewhere" / "darktower")
    cwd = str(tmp_path)
    python = str(tmp_path / ".venv" / "bin" / "python")

    def nothing_on_path(name: str) -> str | None:
        return None

    def venv_on_path(name: str) -> str | None:
        return venv_script if name == "darktower" else None

    def other_on_path(name: str) -> str | None:
        return other_script if name == "darktower" else None

    table = [
        # started as a console script, as typed: the same path back, unless PATH finds it
        (".venv/bin/darktower", nothing_on_path, ".venv/bin/darktower"),
        (".venv/bin/darktower", other_on_path, ".venv/bin/darktower"),
        (".venv/bin/darktower", venv_on_path, "darktower"),
        (venv_script, venv_on_path, "darktower"),
        (venv_script, nothing_on_path, venv_script),
        # started as `python -m darktower`: the interpreter, relative when below cwd
        (os.path.join(cwd, "src", "darktower", "__main__.py"), venv_on_path,
         ".venv/bin/python -m darktower"),
    ]  # fmt: skip
    for argv0, which, expected in table:
        assert darktower_command(argv0, python, cwd=cwd, which=which) == expected, argv0
    assert darktower_command("-c", "/opt/py/bin/python3", cwd=cwd) == (
        "/opt/py/bin/python3 -m darktower"
    )
    assert (
        darktower_command("-c", "/opt/my py/python", cwd="/") == "'opt/my py/python' -m darktower"
    )
