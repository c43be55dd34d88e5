"""Batched roster frames (issue 18): a real in-process MC, real WebSocket clients, real Redis.

* a client that joins with the `roster_delta` feature gets a join storm as a few
  `roster_delta` frames (the same bytes for everyone) and ends with the full roster, while a
  v1 client in the same meeting still gets one `participant_joined` per join;
* departures and updates reach it in `left` / `participants`, with the host after them;
* a roster over `ROSTER_PAGE` is paged: the join answer carries the first page and says how
  many `roster_delta` pages follow; no frame nears the 1 MiB limit;
* the window grows with the meeting (frames per client stay flat in a storm), up to 0.5 s;
* the capability flag is client input: junk is refused as `bad_message` (the socket stays
  open for a proper join), unknown names are ignored (a v1 client).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from darktower.auth.join_tokens import mint_join_token
from darktower.auth.keys import load_private_key
from darktower.mc.connection import ConnectionActor, Deliver
from darktower.mc.meeting.fanout import FLUSH_SLICE, Connections
from darktower.signaling.protocol import (
    MAX_SERVER_FRAME_BYTES,
    ROSTER_DELTA,
    ROSTER_PAGE,
    ErrorCode,
    ErrorMsg,
    Join,
    JoinAnswer,
    Leave,
    LeaveReason,
    ParticipantJoined,
    RosterDelta,
    SelfMute,
)
from tests.mc.signaling_client import SignalingClient, signaling_url
from tests.support.mc import RunningMc

Start = Callable[..., Awaitable[RunningMc]]
MEETING = "m-delta"
FEATURES = [ROSTER_DELTA]


@pytest.fixture
async def clients() -> AsyncIterator[list[SignalingClient]]:
    opened: list[SignalingClient] = []
    try:
        yield opened
    finally:
        await asyncio.gather(*(c.close() for c in opened), return_exceptions=True)


class Joiner:
    def __init__(self, mc: RunningMc, key_dir: Path, opened: list[SignalingClient]) -> None:
        self._key = load_private_key(key_dir / "gc.key")
        self._url = signaling_url(mc.app.client_port)
        self._opened = opened

    def token(self, user: str) -> str:
        return mint_join_token(
            self._key, meeting_id=MEETING, user_id=user, display_name=user.title(), issuer="gc"
        )

    async def open(self) -> SignalingClient:
        client = await SignalingClient.open(self._url)
        self._opened.append(client)
        return client

    async def join(self, user: str, **fields: Any) -> tuple[SignalingClient, JoinAnswer]:
        client = await self.open()
        await client.send(Join(token=self.token(user), **fields))
        # Bounded, but generous: the machine running the tests may be busy.
        return client, await client.expect(JoinAnswer, timeout=60)


async def started(start_mc: Start, **settings: Any) -> RunningMc:
    mc = await start_mc(max_participants=2000, participant_estimate=0, **settings)
    assert (await mc.assign(MEETING)).accepted
    return mc


def known_after(answer: JoinAnswer, frames: list[Any]) -> dict[str, str]:
    """participant id → display name, from a join answer and the roster frames after it."""
    roster = {p.participant_id: p.display_name for p in answer.roster}
    for frame in frames:
        if isinstance(frame, RosterDelta):
            roster.update({p.participant_id: p.display_name for p in frame.participants})
            for gone in frame.left:
                roster.pop(gone.participant_id, None)
        elif isinstance(frame, ParticipantJoined):
            roster[frame.participant.participant_id] = frame.participant.display_name
    return roster


async def roster_frames(client: SignalingClient, until: Callable[[list[Any]], bool]) -> list[Any]:
    """The frames the client got (after its answer) until `until(frames)` holds (bounded)."""
    frames: list[Any] = []
    async with asyncio.timeout(20):
        while not until(frames):
            frames.append(await client.next(timeout=20))
    return frames


async def delta_where(client: SignalingClient, match: Callable[[RosterDelta], bool]) -> RosterDelta:
    """The next roster_delta `match` accepts (the window may carry other changes too)."""
    async with asyncio.timeout(30):
        while True:
            delta = await client.expect(RosterDelta, timeout=30)
            if match(delta):
                return delta


async def test_a_join_storm_reaches_a_batched_client_in_few_frames_and_a_v1_client_per_join(
    start_mc: Start, key_dir: Path, clients: list[SignalingClient]
) -> None:
    mc = await started(start_mc, roster_batch_seconds=0.2)
    joiner = Joiner(mc, key_dir, clients)
    batched, batched_answer = await joiner.join("watcher", features=FEATURES)
    v1, v1_answer = await joiner.join("old-client")
    storm = 60
    joined = await asyncio.gather(
        *(joiner.join(f"u{i}", features=FEATURES if i % 2 else []) for i in range(storm))
    )
    everyone = {a.participant_id for _, a in joined} | {
        batched_answer.participant_id,
        v1_answer.participant_id,
    }

    def complete(answer: JoinAnswer) -> Callable[[list[Any]], bool]:
        return lambda frames: set(known_after(answer, frames)) >= everyone

    deltas = await roster_frames(batched, complete(batched_answer))
    per_join = await roster_frames(v1, complete(v1_answer))
    assert all(isinstance(f, RosterDelta) for f in deltas)
    assert len(deltas) < storm / 4, len(deltas)  # a 0.2 s window: a few frames, not 60
    assert all(isinstance(f, ParticipantJoined) for f in per_join)
    assert len(per_join) == storm  # the v1 client: one frame per join, as before
    for frame in deltas:
        assert frame.host_id == batched_answer.host_id  # the first joiner stays host
    # The batched joiners of the storm have the full roster too (answer + deltas).
    for client, answer in joined[1::2]:
        await roster_frames(client, complete(answer))


async def test_departures_and_updates_come_batched_with_the_host_after_them(
    start_mc: Start, key_dir: Path, clients: list[SignalingClient]
) -> None:
    mc = await started(start_mc, roster_batch_seconds=0.05)
    joiner = Joiner(mc, key_dir, clients)
    host, host_answer = await joiner.join("host", features=FEATURES)
    watcher, watcher_answer = await joiner.join("watcher", features=FEATURES)
    muter, muter_answer = await joiner.join("muter", features=FEATURES)
    await muter.send(SelfMute(muted=True))
    muted = muter_answer.roster[-1].model_copy(update={"muted": True})
    update = await delta_where(watcher, lambda d: muted in d.participants)
    assert update.left == []
    await host.send(Leave())
    gone = await delta_where(watcher, lambda d: bool(d.left))
    assert [(g.participant_id, g.reason) for g in gone.left] == [
        (host_answer.participant_id, LeaveReason.VOLUNTARY)
    ]
    # The host rule: the longest-present participant left takes over, said in the same frame.
    assert gone.host_id == watcher_answer.participant_id


async def test_a_large_roster_is_paged_and_no_frame_nears_the_limit(
    start_mc: Start, key_dir: Path, clients: list[SignalingClient]
) -> None:
    mc = await started(start_mc, roster_batch_seconds=0.05)
    joiner = Joiner(mc, key_dir, clients)
    crowd = ROSTER_PAGE + 20
    for start in range(0, crowd, 50):  # batched joiners, in waves: the test's own CPU is short
        wave = range(start, min(crowd, start + 50))
        await asyncio.gather(*(joiner.join(f"u{i}", features=FEATURES) for i in wave))
    late = await joiner.open()
    sizes: list[int] = []
    raw: list[str | bytes] = []

    late._reader.cancel()  # read the raw frames here, to measure them
    await asyncio.gather(late._reader, return_exceptions=True)
    await late.ws.send(
        json.dumps({"v": 1, "type": "join", "token": joiner.token("late"), "features": FEATURES})
    )
    async with asyncio.timeout(20):
        first = await late.ws.recv()
        answer = JoinAnswer.model_validate_json(first)
        raw.append(first)
        for _ in range(answer.roster_pages):
            raw.append(await late.ws.recv())
    sizes = [len(frame) for frame in raw]
    assert len(answer.roster) == ROSTER_PAGE
    assert answer.roster_pages == 1
    page = RosterDelta.model_validate_json(raw[1])
    assert len(page.participants) == crowd + 1 - ROSTER_PAGE  # the rest, the joiner included
    ids = {p.participant_id for p in answer.roster} | {p.participant_id for p in page.participants}
    assert len(ids) == crowd + 1
    assert max(sizes) < MAX_SERVER_FRAME_BYTES / 4, sizes
    # A v1 client still gets the whole roster in its answer (it knows no pages).
    _, v1_answer = await joiner.join("v1-late")
    assert len(v1_answer.roster) == crowd + 2
    assert v1_answer.roster_pages == 0


@pytest.mark.parametrize(
    "features",
    [
        "roster_delta",  # not a list
        {"roster_delta": True},
        [1, 2],
        [None],
        ["x" * 65],
        ["roster_delta"] * 17,  # more than MAX_FEATURES
    ],
)
async def test_junk_features_are_refused_and_the_socket_stays_for_a_proper_join(
    start_mc: Start, key_dir: Path, clients: list[SignalingClient], features: Any
) -> None:
    mc = await started(start_mc)
    joiner = Joiner(mc, key_dir, clients)
    client = await joiner.open()
    junk = {"v": 1, "type": "join", "token": joiner.token("junk"), "features": features}
    await client.send(junk)
    error = await client.expect(ErrorMsg, timeout=30)
    assert error.code is ErrorCode.BAD_MESSAGE
    assert error.message.startswith("features")
    assert "roster_delta" not in error.message and joiner.token("junk")[:20] not in error.message
    assert not client.closed
    answer = await client.join(joiner.token("junk"))
    assert answer.participant_id


async def test_unknown_feature_names_are_ignored_and_the_client_stays_v1(
    start_mc: Start, key_dir: Path, clients: list[SignalingClient]
) -> None:
    mc = await started(start_mc)
    joiner = Joiner(mc, key_dir, clients)
    odd = ["ROSTER_DELTA", "roster_delta ", "", "<script>", "roster-delta"]
    watcher, _ = await joiner.join("watcher", features=odd)
    _, newcomer = await joiner.join("newcomer", features=FEATURES)
    joined = await watcher.expect(ParticipantJoined, timeout=30)
    assert joined.participant.participant_id == newcomer.participant_id
    assert not any(isinstance(m, RosterDelta) for m in watcher.history)


async def _no_outbox(_frame: str) -> None:
    return None


@pytest.mark.parametrize(
    ("connections", "window"), [(3, 0.05), (100, 0.05), (500, 0.25), (1000, 0.5), (5000, 0.5)]
)
async def test_the_window_grows_with_the_meeting_up_to_half_a_second(
    connections: int, window: float
) -> None:
    fanout = Connections(batch_seconds=0.05)
    for i in range(connections):
        fanout.add(ConnectionActor(f"c{i}", f"p{i}", _no_outbox))
    assert fanout._window() == pytest.approx(window)
    fanout.batch_seconds = 2.0  # a window set above the cap is kept
    assert fanout._window() == pytest.approx(2.0)


async def test_a_window_reaches_a_hundred_connections_a_turn_and_all_before_the_next() -> None:
    fanout = Connections(batch_seconds=0.0)  # each change flushed at once
    got: dict[str, list[Deliver]] = {}
    for i in range(250):
        got[f"p{i}"] = []
        connection = ConnectionActor(f"c{i}", f"p{i}", _no_outbox)
        connection.roster_deltas = True
        connection.send = got[f"p{i}"].append  # type: ignore[method-assign,assignment]
        fanout.add(connection)

    def joined(n: int) -> ParticipantJoined:
        return ParticipantJoined(
            participant={"participant_id": f"x{n}", "user_id": f"u{n}", "display_name": "X"}
        )

    def told() -> int:
        return sum(1 for frames in got.values() if frames)

    fanout.announce(joined(1))
    assert told() == FLUSH_SLICE  # the first slice at once, the others at the next turns
    await asyncio.sleep(0)
    assert told() == 2 * FLUSH_SLICE
    fanout.announce(joined(2))  # the first window reaches everyone before the second starts
    assert all(len(frames) >= 1 for frames in got.values())
    for _ in range(3):
        await asyncio.sleep(0)
    for frames in got.values():
        deltas = [RosterDelta.model_validate_json(f.frame) for f in frames]
        assert [d.participants[0].participant_id for d in deltas] == ["x1", "x2"]
