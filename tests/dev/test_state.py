"""The per-fleet state directory: private, one file per fleet, never following a symlink, and
ignoring what a dead fleet (or someone else) left there."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from dataclasses import asdict
from pathlib import Path

import pytest

from darktower.dev.state import (
    FleetRecord,
    StateDir,
    StateDirError,
    running_dev_gc_url,
    running_fleets,
)
from tests.dev.support import cli, dev_env


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _record(pid: int, url: str = "http://127.0.0.1:1", started: float = 1.0) -> FleetRecord:
    return FleetRecord(pid=pid, gc_url=url, started=started, logs="/nowhere", processes={"gc-1": 1})


def test_a_fleet_publishes_a_private_file_and_removes_only_its_own(tmp_path: Path) -> None:
    where = tmp_path / "state"
    with StateDir(where) as state:
        assert stat.S_IMODE(where.stat().st_mode) == 0o700
        me = _record(os.getpid(), started=2.0)
        state.publish(me)
        state.publish(me)  # again, over the previous one
        other_pid = os.getppid()  # alive, like another fleet
        state.publish(_record(other_pid, "http://127.0.0.1:2", started=1.0))
        mine = where / f"{os.getpid()}.json"
        assert stat.S_IMODE(mine.stat().st_mode) == 0o600
        assert json.loads(mine.read_text())["gc_url"] == "http://127.0.0.1:1"
        assert [p.name for p in where.iterdir() if p.name.startswith(".")] == []  # no temp left
        assert [r.pid for r in state.running()] == [os.getpid(), other_pid]  # newest first
        state.remove(os.getpid())
        assert not mine.exists()
        assert [r.pid for r in running_fleets(where)] == [other_pid]


def test_a_planted_symlink_is_neither_written_through_nor_read(tmp_path: Path) -> None:
    where = tmp_path / "state"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    elsewhere = tmp_path / "elsewhere.json"  # a well-formed record of a live pid, outside
    elsewhere.write_text(json.dumps(asdict(_record(os.getppid()))))
    with StateDir(where) as state:
        (where / f"{os.getpid()}.json").symlink_to(victim)
        (where / f"{os.getppid()}.json").symlink_to(elsewhere)
        assert state.running() == []  # the symlinked record is not followed
        state.publish(_record(os.getpid()))
        assert victim.read_text() == "precious"
        assert not (where / f"{os.getpid()}.json").is_symlink()
        assert [r.pid for r in state.running()] == [os.getpid()]


def test_a_dead_or_forged_fleet_is_ignored_and_forgotten(tmp_path: Path) -> None:
    where = tmp_path / "state"
    with StateDir(where) as state:
        dead = _dead_pid()
        state.publish(_record(dead, started=99.0))  # newest, but its pid is not alive
        alive = os.getpid()
        (where / f"{alive}.json").write_text("{not json")
        (where / "1.json").write_text(json.dumps(asdict(_record(os.getppid()))))  # pid mismatch
        (where / "x.json").write_text(json.dumps(asdict(_record(alive))))
        os.mkfifo(where / f"{os.getppid()}.json")  # reading must not block
        assert state.running() == []
        assert running_fleets(where) == []
        state.forget_dead()
        assert not (where / f"{dead}.json").exists()
        assert (where / "1.json").exists()  # not a record of ours: left alone


@pytest.mark.parametrize("problem", ["symlink", "other owner", "open to others", "a file"])
def test_an_unsafe_state_directory_is_refused(
    tmp_path: Path, problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    where = tmp_path / "state"
    if problem == "symlink":
        real = tmp_path / "real"
        real.mkdir(mode=0o700)
        where.symlink_to(real)
    elif problem == "other owner":
        if os.getuid() != 0:
            pytest.skip("needs root to give a directory to someone else")
        where.mkdir(mode=0o700)
        os.chown(where, 65534, 65534)
    elif problem == "open to others":
        where.mkdir()
        where.chmod(0o777)
    else:
        where.write_text("")
    with pytest.raises(StateDirError, match="refusing the dev state directory"):
        StateDir(where)
    with pytest.raises(StateDirError):
        running_fleets(where)
    said: list[str] = []
    monkeypatch.setenv("DARKTOWER_DEV_STATE", str(where))
    assert running_dev_gc_url(said.append) is None
    assert len(said) == 1 and "not looking for a dev fleet" in said[0]
    if problem == "symlink":
        assert list((tmp_path / "real").iterdir()) == []
    # `darktower dev` refuses it before starting anything.
    refused = cli(dev_env(where), "dev", "--any-port", "--mcs", "1", "--mhs", "0")
    assert refused.returncode == 2, refused.stderr
    assert "refusing the dev state directory" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_log_directories_of_stopped_fleets_are_pruned_to_the_newest(tmp_path: Path) -> None:
    where = tmp_path / "state"
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    with StateDir(where) as state:
        dead = _dead_pid()
        made = [state.make_log_dir(dead, now=1_700_000_000 + i) for i in range(4)]
        live = state.make_log_dir(os.getpid(), now=1_600_000_000)  # oldest, but running
        (where / f"19990101-000000-{dead}").symlink_to(victim)  # named like a log dir
        removed = state.prune_logs(keep=2)
        assert sorted(removed) == sorted(p.name for p in made[:2])
        assert [p.exists() for p in made] == [False, False, True, True]
        assert live.exists()
        assert (victim / "keep.txt").read_text() == "precious"
        with pytest.raises(FileExistsError):
            state.make_log_dir(dead, now=1_700_000_003)
