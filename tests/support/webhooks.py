"""Webhook receivers for tests: a real `darktower webhook-receiver` process (and what it
printed), or its app served by uvicorn in the test's own process on a loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from darktower.runtime.processes import ManagedProcess
from darktower.runtime.serving import EmbeddedUvicorn, listen_socket
from darktower.webhooks.receiver import create_receiver_app
from tests.support.processes import start_darktower

__all__ = ["Receiver", "ReceiverApp", "by_meeting", "serving_app", "serving_receiver"]

START_TIMEOUT_S = 30.0


@dataclass
class Receiver:
    """`darktower webhook-receiver --key-file KEY --port PORT`, its output in `log_path`."""

    key_file: Path
    port: int
    log_path: Path
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/darktower"

    def start(self) -> Receiver:
        self.process = start_darktower(
            ["webhook-receiver", "--key-file", str(self.key_file), "--port", str(self.port)],
            log_path=self.log_path,
            env={},
            name="webhook-receiver",
        )
        # The log is started afresh: events printed before a restart are kept in `printed`.
        self.process.wait_ready(
            lambda: "listening on" in self.log(), timeout=START_TIMEOUT_S, what="receiver up"
        )
        return self

    def log(self) -> str:
        return self.process.log() if self.process is not None else ""

    def events(self) -> list[dict[str, Any]]:
        """Every event printed by this run of the receiver, in arrival order."""
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()


def by_meeting(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        grouped.setdefault(str(event["meeting_id"]), []).append(event)
    return grouped


@dataclass
class ReceiverApp:
    """The receiver app (`create_receiver_app`) served by uvicorn in this process, on a real
    loopback port: what it accepted, in arrival order, in `events`."""

    url: str
    events: list[dict[str, Any]]


@contextlib.asynccontextmanager
async def serving_app(app: ASGIApp, port: int | None = None) -> AsyncIterator[str]:
    """`app` served by uvicorn in this process on 127.0.0.1 (`port`, or a free one); its URL."""
    sock = listen_socket(f"127.0.0.1:{port or 0}", "test HTTP server")
    bound = sock.getsockname()[1]
    server = EmbeddedUvicorn(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), "the test server did not start"
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{bound}/hooks/darktower"
    finally:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)
        sock.close()


@contextlib.asynccontextmanager
async def serving_receiver(secret: str, port: int | None = None) -> AsyncIterator[ReceiverApp]:
    """The verifying receiver app, served as `serving_app` does."""
    events: list[dict[str, Any]] = []
    app = create_receiver_app(secret, out=io.StringIO(), on_event=events.append)
    async with serving_app(app, port) as url:
        yield ReceiverApp(url, events)
