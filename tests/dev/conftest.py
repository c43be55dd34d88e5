"""Fixtures of the `darktower dev` tests: a private state directory and fleets that never
outlive their test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dev.support import DevFleet, StartFleet, dev_env


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return dev_env(tmp_path / "state")


@pytest.fixture
def start_fleet(env: dict[str, str], tmp_path: Path) -> Iterator[StartFleet]:
    """`start_fleet(*dev_args, argv=…, cwd=…)`: a running `darktower dev --any-port`."""
    started: list[DevFleet] = []

    def start(*args: str, **kwargs: object) -> DevFleet:
        out = tmp_path / f"dev-{len(started) + 1}.out"
        fleet = DevFleet(env, out, *args, **kwargs)
        started.append(fleet)
        return fleet

    try:
        yield start
    finally:
        for fleet in started:
            fleet.close()
