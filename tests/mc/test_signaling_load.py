"""500 concurrent signaling clients on one in-process MC, bounded in time.

Layout: 10 meetings x 50 participants. 500 clients is the MC-wide figure the issue asks for;
50 per meeting is already five times the per-meeting estimate the admission uses (docs/reference.md:
10), while every join still fans out to every participant of its meeting (~12 k frames for
the joins alone). One 500-person meeting would spend the test's time in the test clients
parsing 125 k roster frames in this same process, rather than in the MC.

Bounded: every client connects and joins at once; each must have its join answer and, at the
end, see the full roster of its meeting; then all leave, which ends every meeting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from darktower.auth.join_tokens import mint_join_token
from darktower.auth.keys import load_private_key
from darktower.signaling.protocol import (
    Join,
    JoinAnswer,
    Leave,
    ParticipantJoined,
    ParticipantLeft,
)
from tests.mc.signaling_client import SignalingClient, signaling_url
from tests.support.mc import RunningMc

MEETINGS = 10
PER_MEETING = 50
TOTAL = MEETINGS * PER_MEETING

log = logging.getLogger(__name__)


@pytest.mark.alone  # judges latency under load: run by itself (scripts/test.sh)
@pytest.mark.timeout(120)
async def test_500_concurrent_clients_on_one_mc(
    start_mc: Callable[..., Awaitable[RunningMc]],
    key_dir: Path,
    redis_client: aioredis.Redis,
) -> None:
    mc = await start_mc(max_participants=TOTAL, participant_estimate=0)
    meetings = [f"load-{i}" for i in range(MEETINGS)]
    for meeting_id in meetings:
        assert (await mc.assign(meeting_id)).accepted
    gc_key = load_private_key(key_dir / "gc.key")
    url = signaling_url(mc.app.client_port)
    started = time.perf_counter()

    async def join(n: int) -> tuple[str, SignalingClient, JoinAnswer]:
        meeting_id = meetings[n % MEETINGS]
        token = mint_join_token(
            gc_key, meeting_id=meeting_id, user_id=f"u{n}", display_name=f"User {n}", issuer="gc"
        )
        client = await SignalingClient.open(url)
        await client.send(Join(token=token))
        answer = await client.expect(JoinAnswer, timeout=60)
        return meeting_id, client, answer

    joined = await asyncio.gather(*(join(n) for n in range(TOTAL)))
    joined_at = time.perf_counter() - started
    clients = [client for _, client, _ in joined]
    try:
        assert len({answer.participant_id for _, _, answer in joined}) == TOTAL
        assert mc.app.controller.capacity().current_participants == TOTAL

        # Every client ends up knowing all of its meeting: its answer's roster plus the joins
        # announced after it.
        async def full_roster(client: SignalingClient, answer: JoinAnswer) -> None:
            known = {p.participant_id for p in answer.roster}
            async with asyncio.timeout(60):
                while len(known) < PER_MEETING:
                    message = await client.expect(ParticipantJoined, timeout=60)
                    known.add(message.participant.participant_id)

        await asyncio.gather(*(full_roster(c, a) for _, c, a in joined))
        for meeting_id in meetings:
            state = await redis_client.hgetall(f"meeting:{{{meeting_id}}}:state")
            assert len([k for k in state if k.startswith(b"p:")]) == PER_MEETING
        settled_at = time.perf_counter() - started

        await asyncio.gather(*(c.send(Leave()) for c in clients))
        await asyncio.gather(*(c.wait_closed(timeout=60) for c in clients))
        assert await mc.app.controller.wait_empty(30)
        for meeting_id in meetings:
            assert await redis_client.get(f"meeting:{{{meeting_id}}}:owner") is None
        left_at = time.perf_counter() - started
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    assert all(
        isinstance(m, ParticipantLeft) and m.participant_id == a.participant_id
        for _, c, a in joined
        for m in c.history[-1:]
    )
    log.warning(
        "%d clients (%d meetings x %d): all joined in %.1f s, rosters complete at %.1f s, "
        "all left and meetings ended at %.1f s",
        TOTAL,
        MEETINGS,
        PER_MEETING,
        joined_at,
        settled_at,
        left_at,
    )
