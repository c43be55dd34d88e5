"""`ClientSession` and `darktower client` against a real fleet in the test's loop: a GC, MCs
serving client signaling, a simulated MH (`tests.client.in_process_fleet`).

Join and the roster, changes as they happen (join, mute, host mute, leave), a dropped socket
that comes back as the same participant, a meeting that moves to another MC while its first MC
is cut off from the GC, refusals, and the terminal client in a real process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from darktower.client.cli import describe, safe
from darktower.client.session import (
    ClientSession,
    Ended,
    Joined,
    JoinRefused,
    Reconnecting,
)
from darktower.mc.binding import mint_binding_token
from darktower.signaling.protocol import (
    ErrorCode,
    ErrorMsg,
    LeaveReason,
    Muted,
    Participant,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantUpdated,
)
from tests.client import InProcessFleet, Watcher, in_process_fleet

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def fleet(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> AsyncIterator[InProcessFleet]:
    async with in_process_fleet(
        tmp_path,
        redis_url,
        mcs=2,
        mc_overrides={"meeting_touch_seconds": 0.2, "disconnect_grace_seconds": 10},
        gc_overrides={"staleness_seconds": 1.5, "sweep_interval_seconds": 0.2},
    ) as started:
        yield started


Join = Callable[..., Awaitable[tuple[ClientSession, Watcher]]]


@pytest.fixture
async def join(fleet: InProcessFleet) -> AsyncIterator[Join]:
    opened: list[tuple[ClientSession, Watcher]] = []

    async def start(
        name: str, meeting: str = "standup", **kwargs: Any
    ) -> tuple[ClientSession, Watcher]:
        session = ClientSession(fleet.gc_url, meeting, display_name=name, **kwargs)
        await session.join()
        watcher = Watcher(session)
        opened.append((session, watcher))
        return session, watcher

    try:
        yield start
    finally:
        for session, watcher in opened:
            await session.aclose()
            await watcher.aclose()


def _about(participant_id: str | None) -> Callable[[ParticipantLeft], bool]:
    return lambda event: event.participant_id == participant_id


def _names(session: ClientSession) -> list[str]:
    return sorted(p.display_name for p in session.roster.values())


async def test_two_participants_see_each_other_mute_and_leave(join: Join) -> None:
    ada, ada_events = await join("Ada", user_id="ada")
    first = await ada_events.expect(Joined)
    assert first.kind == "joined" and first.mc_id in {"mc-1", "mc-2"}
    assert _names(ada) == ["Ada"] and ada.host_id == ada.participant_id
    assert ada.user_id == "ada"

    bo, bo_events = await join("Bo")
    assert bo.user_id is not None and bo.user_id.startswith("u-")  # the GC made one up
    arrived = await ada_events.expect(ParticipantJoined)
    assert arrived.participant.display_name == "Bo"
    assert arrived.participant.participant_id == bo.participant_id
    assert _names(ada) == _names(bo) == ["Ada", "Bo"]
    assert bo.mc_id == ada.mc_id  # one meeting, one MC

    await bo.set_muted(True)
    update = await ada_events.expect(
        ParticipantUpdated, lambda e: e.participant.participant_id == bo.participant_id
    )
    assert update.participant.muted and ada.roster[bo.participant_id or ""].muted

    await bo.leave()
    left = await ada_events.expect(ParticipantLeft)
    assert (left.participant_id, left.reason) == (bo.participant_id, LeaveReason.VOLUNTARY)
    assert _names(ada) == ["Ada"]
    assert bo.ended == Ended("voluntary")
    assert (await bo_events.expect(Ended)).reason == "voluntary"


async def test_only_the_host_may_mute_others(join: Join) -> None:
    ada, ada_events = await join("Ada")
    bo, bo_events = await join("Bo")
    await ada_events.expect(ParticipantJoined)

    await bo.host_mute(ada.participant_id or "", True)
    refused = await bo_events.expect(ErrorMsg)
    assert refused.code is ErrorCode.NOT_HOST
    assert not ada_events.seen(Muted)

    await ada.host_mute(bo.participant_id or "", True)
    muted = await bo_events.expect(Muted)
    assert (muted.participant_id, muted.muted, muted.by) == (
        bo.participant_id,
        True,
        ada.participant_id,
    )
    assert bo.roster[bo.participant_id or ""].host_muted


async def test_a_dropped_socket_comes_back_as_the_same_participant(join: Join) -> None:
    _, ada_events = await join("Ada")
    bo, bo_events = await join("Bo", user_id="bo")
    await ada_events.expect(ParticipantJoined)
    before = (bo.participant_id, bo.correlation_id, bo.binding_token)

    connection = bo.connection
    assert connection is not None
    connection.transport.abort()  # the network goes: no close frame, no leave

    await bo_events.expect(Reconnecting)
    back = await bo_events.expect(Joined)
    assert back.kind == "reconnected" and back.answer.reconnected
    assert (bo.participant_id, bo.correlation_id) == before[:2]
    assert bo.binding_token != before[2]
    assert bo.user_id == "bo"
    assert _names(bo) == ["Ada", "Bo"]
    up = await ada_events.expect(
        ParticipantUpdated,
        lambda e: e.participant.participant_id == bo.participant_id and e.participant.connected,
    )
    assert up.participant.display_name == "Bo"
    assert not ada_events.seen(ParticipantLeft)

    # Dropped again, with the binding token from the reconnection: back again.
    connection = bo.connection
    assert connection is not None
    connection.transport.abort()
    assert (await bo_events.expect(Joined)).kind == "reconnected"
    assert bo.participant_id == before[0]


async def test_a_session_whose_binding_expired_comes_back_as_itself(
    fleet: InProcessFleet, join: Join
) -> None:
    ada, ada_events = await join("Ada", user_id="ada")
    bo, bo_events = await join("Bo", user_id="bo")
    await ada_events.expect(ParticipantJoined)
    before = (ada.participant_id, ada.correlation_id)
    assert before[0] is not None and before[1] is not None
    # Ada's client held on to a binding token past its life (an outage longer than the TTL).
    secret = fleet.mcs[0].settings.binding_token_secret
    assert secret is not None
    ada.binding_token = mint_binding_token(
        secret.get_secret_value().encode(),
        meeting_id="standup",
        correlation_id=before[1],
        participant_id=before[0],
        now=time.time() - 60,
    )
    connection = ada.connection
    assert connection is not None
    connection.transport.abort()

    back = await ada_events.expect(Joined)
    refused = [e.why for e in ada_events.seen(Reconnecting)]
    assert any("invalid_binding" in why for why in refused), refused
    # The resumption was refused, the fresh join took Ada's seat back: still Ada, still host.
    assert back.kind == "reconnected" and back.answer.reconnected
    assert ada.participant_id == before[0] and ada.correlation_id != before[1]
    assert ada.host_id == ada.participant_id == bo.host_id
    assert _names(ada) == _names(bo) == ["Ada", "Bo"]
    up = await bo_events.expect(
        ParticipantUpdated,
        lambda e: e.participant.participant_id == before[0] and e.participant.connected,
    )
    assert up.participant.user_id == "ada"
    assert not bo_events.seen(ParticipantLeft) and not bo_events.seen(ParticipantJoined)


async def test_a_meeting_that_moves_is_followed_to_its_new_mc(
    fleet: InProcessFleet, join: Join
) -> None:
    ada, ada_events = await join("Ada", user_id="ada")
    bo, bo_events = await join("Bo", user_id="bo")
    old = ada.mc_id
    assert old is not None
    host = fleet.mc(old)
    # Cut the MC off from the GC (no more heartbeats) while it keeps serving its clients: the
    # GC marks it stale and places the meeting anew on the other MC, which takes it over in
    # Redis; the old MC's meeting is fenced out and tells its clients it moved.
    assert host.link is not None
    await host.link.stop()
    store = fleet.gc.store
    assert store is not None

    async def stale() -> bool:
        controller = await store.get_controller(old)
        return controller is not None and controller.health.value == "unhealthy"

    deadline = asyncio.get_running_loop().time() + 10
    while not await stale():
        assert asyncio.get_running_loop().time() < deadline, f"{old} never turned unhealthy"
        await asyncio.sleep(0.1)
    async with httpx.AsyncClient(base_url=fleet.gc_url, trust_env=False) as http:
        moved_to = (await http.post("/v1/meetings/standup/join")).json()["mc_id"]
    assert moved_to != old

    for session, events in ((ada, ada_events), (bo, bo_events)):
        left = await events.expect(ParticipantLeft, _about(session.participant_id))
        assert left.reason is LeaveReason.MOVED
        again = await events.expect(Joined)
        assert again.mc_id == moved_to and session.mc_id == moved_to
        assert again.kind == "reconnected"  # the new MC carried the session over
    assert _names(ada) == _names(bo) == ["Ada", "Bo"]
    assert ada.ended is None and bo.ended is None


async def test_a_refused_join_says_why(fleet: InProcessFleet) -> None:
    async with ClientSession(fleet.gc_url, "bad id", display_name="Ada") as session:
        with pytest.raises(JoinRefused) as caught:
            await session.join()
    assert caught.value.code == "http_400" and not caught.value.retryable
    async with ClientSession(fleet.gc_url, "ok", display_name="\x1b[2J") as session:
        with pytest.raises(JoinRefused, match="display_name"):
            await session.join()
    async with ClientSession("http://127.0.0.1:9", "ok", display_name="Ada") as session:
        with pytest.raises(JoinRefused) as unreachable:
            await session.join()
    assert unreachable.value.code == "gc_unreachable" and unreachable.value.retryable


# --- the terminal client --------------------------------------------------------------------


def _participant(pid: str, name: str, **flags: bool) -> Participant:
    return Participant(participant_id=pid, user_id=f"u-{pid}", display_name=name, **flags)


ADA = _participant("p1", "Ada")
BO = _participant("p2", "Bo")


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (ParticipantJoined(participant=BO), "+ Bo joined"),
        (ParticipantLeft(participant_id="p2", reason=LeaveReason.TIMEOUT), "- Bo left (timeout)"),
        (ParticipantLeft(participant_id="p9", reason=LeaveReason.MOVED), "- p9 left (moved)"),
        (ParticipantUpdated(participant=_participant("p2", "Bo", muted=True)), "* Bo muted"),
        (
            ParticipantUpdated(participant=_participant("p2", "Bo", connected=False)),
            "* Bo disconnected",
        ),
        (ParticipantUpdated(participant=BO), None),
        (Muted(participant_id="p2", muted=True, by="p1"), "* Bo muted by Ada"),
        (ErrorMsg(code=ErrorCode.NOT_HOST, message="only the host"), "! not_host: only the host"),
        (
            ParticipantJoined(participant=_participant("p3", "\x1b[31mred\u202e")),
            "+ \ufffd[31mred\ufffd joined",
        ),
    ],
)
def test_each_change_is_one_plain_line(event: Any, line: str | None) -> None:
    assert describe(event, {"p1": ADA, "p2": BO}) == line


def test_safe_cuts_and_neutralises() -> None:
    assert safe("a" * 130, limit=5) == "aaaaa…"
    assert safe("ok\r\nnext\x07") == "ok\ufffd\ufffdnext\ufffd"


async def _line(stream: asyncio.StreamReader, contains: str, seen: list[str]) -> str:
    async with asyncio.timeout(30):
        while True:
            raw = await stream.readline()
            if not raw:
                raise AssertionError(f"the client exited before printing {contains!r}: {seen}")
            text = raw.decode("utf-8", "replace").rstrip("\n")
            seen.append(text)
            if contains in text:
                return text


@pytest.mark.timeout(90)
async def test_darktower_client_prints_the_roster_and_changes_and_leaves_on_ctrl_c(
    fleet: InProcessFleet, join: Join
) -> None:
    _, ada_events = await join("Ada")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MC_", "GC_"))}
    env.update({"COLUMNS": "200", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "darktower", "client", "standup", "--name", "Cli",
        "--gc-url", fleet.gc_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
    )  # fmt: skip
    seen: list[str] = []
    try:
        assert process.stdout is not None
        header = await _line(process.stdout, "joined standup", seen)
        assert "as Cli" in header and "2 in the meeting" in header
        await _line(process.stdout, "Ada (host)", seen)
        await _line(process.stdout, "Cli (you)", seen)
        cli = await ada_events.expect(ParticipantJoined)
        assert cli.participant.display_name == "Cli"

        bo, _ = await join("Bo")
        await _line(process.stdout, "+ Bo joined", seen)
        await bo.set_muted(True)
        await _line(process.stdout, "* Bo muted", seen)
        await bo.leave()
        await _line(process.stdout, "- Bo left (voluntary)", seen)

        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            code = await process.wait()
        assert code == 0, seen
        gone = await ada_events.expect(
            ParticipantLeft, lambda e: e.participant_id == cli.participant.participant_id
        )
        assert gone.reason is LeaveReason.VOLUNTARY
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
