"""The services run on uvloop (a core dependency on Linux) unless told `*_EVENT_LOOP=asyncio`:
real `darktower mc` processes say which loop they started on."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from darktower.runtime.event_loop import EventLoop, loop_factory, loop_name
from tests.support.services import mc_values, run_to_exit

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="uvloop is core on Linux only")


def test_uvloop_is_the_default_and_asyncio_can_be_chosen() -> None:
    factory = loop_factory(EventLoop.UVLOOP)
    assert factory is not None, "uvloop is a core dependency on Linux"
    with asyncio.Runner(loop_factory=factory) as runner:
        assert loop_name(runner.get_loop()) == "uvloop"
    assert loop_factory("asyncio") is None
    with asyncio.Runner(loop_factory=loop_factory("asyncio")) as runner:
        assert loop_name(runner.get_loop()) == "asyncio"
    with pytest.raises(ValueError, match="tokio"):
        loop_factory("tokio")


@pytest.mark.slow
@pytest.mark.parametrize(("setting", "loop"), [(None, "uvloop"), ("asyncio", "asyncio")])
def test_a_started_mc_logs_its_event_loop(
    tmp_path: Path, redis_url: str, held_port: int, setting: str | None, loop: str
) -> None:
    values = mc_values(redis_url, tmp_path / "keys") | {
        "MC_GRPC_BIND": f"127.0.0.1:{held_port}",
        "MC_LOG_LEVEL": "DEBUG",
    }
    if setting is not None:
        values["MC_EVENT_LOOP"] = setting
    result = run_to_exit("mc", values, tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"darktower.service: event loop: {loop}" in result.stderr, result.stderr


def test_an_unknown_event_loop_is_refused(tmp_path: Path, redis_url: str) -> None:
    values = mc_values(redis_url, tmp_path / "keys") | {"MC_EVENT_LOOP": "tokio"}
    result = run_to_exit("mc", values, tmp_path)
    assert result.returncode == 2, result.stderr
    assert "MC_EVENT_LOOP:" in result.stderr, result.stderr
