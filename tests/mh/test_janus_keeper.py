"""A Janus that dies under the MH is noticed, reported down and started again."""

from __future__ import annotations

import signal

import pytest

from tests.support.janus import RunningJanus
from tests.support.janus_client import requires_janus
from tests.support.waiting import eventually

pytestmark = [requires_janus, pytest.mark.timeout(90)]


async def test_a_killed_janus_is_restarted(running_janus: RunningJanus) -> None:
    keeper = running_janus.keeper
    assert keeper.process is not None and keeper.up
    first_pid = keeper.process.pid
    keeper.process.signal_group(signal.SIGKILL)

    await eventually(lambda: bool(running_janus.restarts), timeout=20, what="janus seen down")
    await eventually(
        lambda: keeper.up and keeper.process is not None and keeper.process.pid != first_pid,
        timeout=30,
        what="janus restarted",
    )
    assert keeper.starts == 2
    await running_janus.admin.ping()  # the new one answers with the same secret


async def test_a_janus_that_stops_answering_is_replaced(running_janus: RunningJanus) -> None:
    keeper = running_janus.keeper
    assert keeper.process is not None
    frozen = keeper.process.pid
    keeper.process.signal_group(signal.SIGSTOP)
    try:
        await eventually(lambda: bool(running_janus.restarts), timeout=30, what="janus seen down")
        assert not keeper.up or keeper.process.pid != frozen
    finally:
        keeper.process.signal_group(signal.SIGCONT)
    await eventually(lambda: keeper.up, timeout=30, what="janus restarted")
    assert keeper.process.pid != frozen
