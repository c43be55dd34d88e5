"""The Redis servers of a Sentinel setup (`darktower.embedded.topologies`) run as managed
processes: when the process that started them is SIGKILLed — no cleanup runs — none of them is
left behind (a test run killed mid-way orphans no redis-server)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.support.processes import pid_gone
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux only"),
]

OWNER = """
    import time
    from darktower.embedded.topologies import SentinelSetup
    setup = SentinelSetup().start()
    print(" ".join(str(p.pid) for p in setup._processes), flush=True)
    time.sleep(120)
"""


def test_no_redis_server_outlives_a_sigkilled_owner() -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(OWNER)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    pids: list[int] = []
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline()  # printed once the setup is up (bounded by its waits)
        pids = [int(pid) for pid in line.split()]
        assert len(pids) == 5, line  # master, replica, three sentinels
        assert not any(pid_gone(pid) for pid in pids)
        owner.kill()
        owner.wait(timeout=10)
        wait_until(
            lambda: all(pid_gone(pid) for pid in pids), timeout=10, what="redis-servers gone"
        )
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(timeout=10)
        if owner.stdout is not None:
            owner.stdout.close()
