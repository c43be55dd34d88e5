"""A real Janus for tests, started by the MH's own `JanusKeeper` on free loopback ports
(`running_janus`, an async context manager; the `running_janus` fixture of tests/mh wraps it).
Tests that use one are marked `requires_janus` (`tests.support.janus_client`)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from darktower.embedded.redis import free_port
from darktower.mh.janus_admin import JanusAdmin
from darktower.mh.janus_config import JanusConfig
from darktower.mh.janus_process import JanusKeeper
from tests.support.janus_client import JANUS

__all__ = ["RunningJanus", "running_janus"]


@dataclass
class RunningJanus:
    keeper: JanusKeeper
    admin: JanusAdmin
    ws_url: str
    config: JanusConfig
    restarts: list[int] = field(default_factory=list)


@asynccontextmanager
async def running_janus(work_dir: Path) -> AsyncIterator[RunningJanus]:
    """Janus up (waited for, at most 30 s) with its files below `work_dir`; stopped after."""
    assert JANUS is not None, "janus is not installed"
    config = JanusConfig(
        server_name="mh-test",
        ws_host="127.0.0.1",
        ws_port=free_port(),
        admin_port=free_port(),
        admin_secret="admin-" + os.urandom(8).hex(),
        room_admin_key="room-" + os.urandom(8).hex(),
        rtp_port_range="40000-40999",
        ice_enforce_list="lo",
    )
    admin = JanusAdmin(
        f"http://127.0.0.1:{config.admin_port}/admin",
        SecretStr(config.admin_secret),
        SecretStr(config.room_admin_key),
        timeout=1.0,
    )
    restarts: list[int] = []
    keeper = JanusKeeper(
        JANUS,
        config,
        work_dir / "janus",
        admin,
        on_restart=lambda: restarts.append(1),
        check_interval=0.2,
    )
    task = asyncio.create_task(keeper.run())
    try:
        assert await keeper.wait_up(30.0), f"janus did not start: {keeper.log_path}"
        yield RunningJanus(keeper, admin, f"ws://127.0.0.1:{config.ws_port}", config, restarts)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await admin.aclose()
