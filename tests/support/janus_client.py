"""A minimal Janus client over its WebSocket API (subprotocol `janus-protocol`), for tests:
what a browser does before any media — open a session with a token, attach the VideoRoom
plugin, join a room."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

__all__ = ["JANUS", "JanusClient", "janus_client", "requires_janus"]

JANUS = shutil.which("janus")
# Skipped without `janus` on a developer's machine; never in CI (`CI` set), where a missing
# Janus must fail the run instead of turning the media tests green by skipping them.
requires_janus = pytest.mark.skipif(
    JANUS is None and not os.environ.get("CI"),
    reason="janus is not installed: apt install janus (CI does)",
)


class JanusClient:
    def __init__(self, ws: ClientConnection, token: str) -> None:
        self._ws = ws
        self.token = token
        self.session: int | None = None
        self.handle: int | None = None

    async def request(self, body: dict[str, Any], *, want_event: bool = False) -> dict[str, Any]:
        """Send `body` (with token, session and handle when known); the answer with the same
        transaction — for plugin messages the asynchronous `event` after the `ack`."""
        transaction = secrets.token_hex(6)
        message = {**body, "transaction": transaction, "token": self.token}
        if self.session is not None:
            message.setdefault("session_id", self.session)
        if self.handle is not None and body.get("janus") == "message":
            message.setdefault("handle_id", self.handle)
        await self._ws.send(json.dumps(message))
        while True:
            answer = json.loads(await self._ws.recv())
            if answer.get("transaction") != transaction:
                continue
            if want_event and answer.get("janus") == "ack":
                continue
            result: dict[str, Any] = answer
            return result

    async def create_session(self) -> dict[str, Any]:
        answer = await self.request({"janus": "create"})
        if answer.get("janus") == "success":
            self.session = int(answer["data"]["id"])
        return answer

    async def attach_videoroom(self) -> dict[str, Any]:
        answer = await self.request({"janus": "attach", "plugin": "janus.plugin.videoroom"})
        if answer.get("janus") == "success":
            self.handle = int(answer["data"]["id"])
        return answer

    async def join(self, room: int, *, display: str = "test") -> dict[str, Any]:
        """Join as a publisher with this client's token: the plugin's answer (`plugindata.data`)."""
        body = {
            "request": "join",
            "ptype": "publisher",
            "room": room,
            "display": display,
            "token": self.token,
        }
        answer = await self.request({"janus": "message", "body": body}, want_event=True)
        data: dict[str, Any] = answer.get("plugindata", {}).get("data", answer)
        return data


@asynccontextmanager
async def janus_client(url: str, token: str) -> AsyncIterator[JanusClient]:
    """`url`: ws(s)://, or the http(s):// form an MH hands out (the same host and port)."""
    url = url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    async with websockets.connect(url, subprotocols=["janus-protocol"]) as ws:  # type: ignore[list-item]
        yield JanusClient(ws, token)
