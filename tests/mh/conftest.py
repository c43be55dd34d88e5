"""Fixtures of the MH tests: a real Janus (`tests.support.janus`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support import janus
from tests.support.janus import RunningJanus

__all__ = ["RunningJanus", "running_janus"]


@pytest.fixture
async def running_janus(tmp_path: Path) -> AsyncIterator[RunningJanus]:
    async with janus.running_janus(tmp_path) as running:
        yield running
