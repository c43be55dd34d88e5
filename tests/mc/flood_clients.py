"""Signaling flooders in a process of their own (tests/mc/test_limits.py), as an attacker runs
them: `python -m tests.mc.flood_clients URL LIMIT` reads one join token per line on stdin,
opens one WebSocket per token, joins, then sends `self_mute` flips as fast as the socket takes
them until the MC closes it (or LIMIT frames went). Prints one JSON object per line on stdout:
`joined` once every socket joined (the test starts measuring then), then per socket
`{"sent", "code", "reason"}` (the close code and reason the MC sent) and `done`.

The issue 14 finding it reproduces: 60k `self_mute` frames in 0.5 s from one client queued
57,791 messages in the meeting's mailbox and others waited 11 s for a pong.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from darktower.signaling.protocol import Join, SelfMute, encode

FLIPS = (encode(SelfMute(muted=True)), encode(SelfMute(muted=False)))


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def joined(url: str, token: str) -> ClientConnection:
    ws = await connect(url, open_timeout=10, close_timeout=2, proxy=None)
    await ws.send(encode(Join(token=token)))
    answer = await asyncio.wait_for(ws.recv(), 10)
    if '"join_answer"' not in str(answer):
        raise SystemExit(f"not joined: {str(answer)[:200]}")
    return ws


async def flood(ws: ClientConnection, limit: int, go: asyncio.Event) -> dict[str, object]:
    await go.wait()
    started = time.monotonic()
    sent = 0
    try:
        while sent < limit:
            await ws.send(FLIPS[sent % 2])  # yields only when the socket pushes back
            sent += 1
            if sent % 50 == 0:
                await asyncio.sleep(0)  # every socket floods at once, and sees its close
    except ConnectionClosed:
        pass
    refused_after = time.monotonic() - started
    try:  # the MC's close frame, behind whatever it sent before it
        await asyncio.wait_for(ws.wait_closed(), 15)
    except TimeoutError:
        await ws.close()
    return {
        "sent": sent,
        "code": ws.close_code,
        "reason": ws.close_reason,
        "refused_after_s": round(refused_after, 3),
        "closed_after_s": round(time.monotonic() - started, 3),
    }


async def main(url: str, limit: int, tokens: list[str]) -> None:
    sockets = [await joined(url, token) for token in tokens]
    go = asyncio.Event()
    floods = [asyncio.create_task(flood(ws, limit, go)) for ws in sockets]
    say(joined=len(sockets))
    go.set()
    for result in await asyncio.gather(*floods):
        say(**result)
    say(done=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.stdin.read().split()))
