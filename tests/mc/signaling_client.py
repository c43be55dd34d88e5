"""A small signaling client for tests: a real WebSocket, frames parsed with the protocol module.

A reader task parses every frame from the MC into `inbox` (and `history`, in order), so a test
can wait for one kind of message while the others keep arriving. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, TypeVar

from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from darktower.signaling.protocol import (
    MAX_SERVER_FRAME_BYTES,
    ErrorMsg,
    Join,
    JoinAnswer,
    Muted,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantUpdated,
    Pong,
    Redirect,
    RosterDelta,
    encode,
    parse_server,
)

__all__ = ["SignalingClient", "signaling_url"]

ServerMsg = (
    JoinAnswer
    | ParticipantJoined
    | ParticipantLeft
    | ParticipantUpdated
    | RosterDelta
    | Muted
    | Pong
    | Redirect
    | ErrorMsg
)
T = TypeVar("T", bound=BaseModel)

WAIT_SECONDS = 5.0
# Frames from the MC may exceed the 16 KiB client-frame limit (a large roster).
CLIENT_MAX_FRAME = MAX_SERVER_FRAME_BYTES


def signaling_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/v1/signaling"


class SignalingClient:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.inbox: asyncio.Queue[ServerMsg] = asyncio.Queue()
        self.history: list[ServerMsg] = []
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, url: str) -> SignalingClient:
        ws = await connect(
            url, open_timeout=WAIT_SECONDS, close_timeout=2, max_size=CLIENT_MAX_FRAME, proxy=None
        )
        return cls(ws)

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in self.ws:
                message = parse_server(frame)
                self.history.append(message)
                self.inbox.put_nowait(message)

    async def send(self, message: BaseModel | dict[str, Any] | str) -> None:
        if isinstance(message, BaseModel):
            await self.ws.send(encode(message))
        elif isinstance(message, dict):
            import json

            await self.ws.send(json.dumps(message))
        else:
            await self.ws.send(message)

    async def join(self, token: str, **fields: Any) -> JoinAnswer:
        """Send a join; the join_answer, or AssertionError naming the error the MC sent."""
        await self.send(Join(token=token, **fields))
        reply = await self.next()
        assert isinstance(reply, JoinAnswer), reply
        return reply

    async def next(self, timeout: float = WAIT_SECONDS) -> ServerMsg:
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def expect(self, kind: type[T], timeout: float = WAIT_SECONDS, **match: Any) -> T:
        """The next message of `kind` whose fields equal `match`; others are skipped."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.inbox.get()
                if isinstance(message, kind) and all(
                    getattr(message, k) == v for k, v in match.items()
                ):
                    return message

    async def wait_closed(self, timeout: float = WAIT_SECONDS) -> None:
        """Until the MC has closed the socket (the reader ends with it)."""
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)

    @property
    def closed(self) -> bool:
        return self._reader.done()

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(self._reader, 2)
