"""A rejoin after an MC outage longer than the binding token's life leaves no ghost (issue 11).

Real processes: a GC, two `darktower mc` (binding tokens valid their TTL + the 5 s clock skew,
a disconnect grace), simulated MHs; three `ClientSession`s join one meeting through
the GC: Ada (the host), Bob, and Cy, the control. The hosting MC is frozen with SIGSTOP until
the GC has marked it stale and every binding token the clients hold has expired. Cy gives up
then; Ada and Bob notice the dead MC (the test aborts their sockets, as websockets' keepalive
would after 20 to 40 s) and rejoin through the GC, which places the meeting on the other MC. That
MC carries the roster over (everyone disconnected, with a fresh grace) and refuses the
resumptions (expired); the clients join afresh with their user ids and get their seats back.

Run twice: with a 2 s token and a 6 s grace (quick), and with the MC's defaults (30 s token,
30 s grace: the outage lasts over 35 s, as in the report of the bug).

Checked: the same participant ids, Ada still host and connected, each person once in every
roster and in Redis, and no departure but Cy's: his grace, started with Ada's and Bob's at the
takeover, runs out (`timeout`), which shows that theirs would have too had they not been
cancelled. Finally the frozen MC resumes, finds itself fenced out, and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from darktower.client.session import ClientSession, Joined, Reconnecting
from darktower.mc.binding import (
    BindingRefusal,
    InvalidBinding,
    check_binding_token,
)
from darktower.signaling.protocol import LeaveReason, ParticipantLeft, ParticipantUpdated
from tests.client import Watcher
from tests.e2e.fleet import FAST_MC_ENV, Fleet, metric

pytestmark = pytest.mark.slow

MEETING = "standup"
WAIT_S = 30.0
SKEW_S = 5  # the binding check's allowance for clock skew (BINDING_CLOCK_SKEW_SECONDS)
SECRET = FAST_MC_ENV["MC_BINDING_TOKEN_SECRET"].encode()


async def poll(condition: Callable[[], Any], *, what: str, timeout: float = WAIT_S) -> None:
    """Until `condition()` (run in a thread: it may block on HTTP) is true; bounded."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, f"not {what} within {timeout}s"
        await asyncio.sleep(0.1)


def expired(session: ClientSession, ttl_s: int) -> bool:
    """The session's binding token is past its life, by the MCs' own check."""
    assert session.binding_token and session.correlation_id and session.participant_id
    try:
        check_binding_token(
            SECRET,
            session.binding_token,
            meeting_id=MEETING,
            correlation_id=session.correlation_id,
            participant_id=session.participant_id,
            ttl_seconds=ttl_s,
        )
    except InvalidBinding as exc:
        return exc.reason is BindingRefusal.EXPIRED
    return False


def roster_in_redis(db: redis.Redis) -> tuple[str | None, dict[str, dict[str, Any]]]:
    """The host field and the participant entries (id → JSON) of the meeting's state hash."""
    state = {str(k): str(v) for k, v in db.hgetall(f"meeting:{{{MEETING}}}:state").items()}
    entries = {k[2:]: json.loads(v) for k, v in state.items() if k.startswith("p:")}
    return state.get("host"), entries


def departures(watcher: Watcher) -> list[tuple[str, LeaveReason]]:
    return [(e.participant_id, e.reason) for e in watcher.seen(ParticipantLeft)]


@pytest.mark.parametrize(
    ("ttl_s", "grace_s", "settings"),
    [
        # About 15 s on an idle machine; the margin is for starting processes on a busy one.
        pytest.param(
            2,
            6.0,
            {
                "binding_token_ttl_seconds": "2",
                "disconnect_grace_seconds": "6",
                "meeting_touch_seconds": "0.5",
            },
            id="2s-token",
            marks=pytest.mark.timeout(90),
        ),
        # The MC's defaults: an outage of over 35 s, then the 30 s grace of the one who left.
        pytest.param(30, 30.0, {}, id="default-30s-token", marks=pytest.mark.timeout(240)),
    ],
)
async def test_a_rejoin_after_an_outage_longer_than_the_token_life_leaves_no_ghost(
    fleet: Fleet,
    database_url: str,
    redis_db: redis.Redis,
    ttl_s: int,
    grace_s: float,
    settings: dict[str, str],
) -> None:
    gc = await asyncio.to_thread(
        fleet.up,
        database_url,
        mcs={"mc-a": settings, "mc-b": settings},
        mhs={"mh-1": "zone-a"},
    )
    sessions: dict[str, ClientSession] = {}
    watchers: dict[str, Watcher] = {}
    try:
        for name in ("Ada", "Bob", "Cy"):
            session = ClientSession(
                gc.http_url, MEETING, display_name=name, user_id=name.lower(), open_timeout=5
            )
            sessions[name] = session
            await session.join()
            watchers[name] = Watcher(session)
            assert (await watchers[name].expect(Joined)).kind == "joined"
        ada, bob, cy = sessions["Ada"], sessions["Bob"], sessions["Cy"]
        await poll(lambda: len(ada.roster) == 3, what="Ada seeing all three")
        assert ada.host_id == ada.participant_id
        assert ada.mc_id == bob.mc_id == cy.mc_id and ada.mc_id is not None
        before = {name: s.participant_id or "" for name, s in sessions.items()}
        frozen = fleet.mcs[ada.mc_id]
        other = next(mc for mc_id, mc in fleet.mcs.items() if mc_id != ada.mc_id)

        # The outage: longer than the GC's staleness and than every binding token's life.
        frozen.send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        cy_connection = cy.connection
        assert cy_connection is not None
        cy_connection.transport.abort()
        await cy.aclose()  # Cy does not come back
        await poll(
            lambda: gc.controllers()[frozen.mc_id]["health"] == "unhealthy",
            what=f"{frozen.mc_id} marked stale by the GC",
        )
        await poll(
            lambda: expired(ada, ttl_s) and expired(bob, ttl_s),
            what="the binding tokens expired",
            timeout=WAIT_S + ttl_s + SKEW_S,
        )
        # The tokens were minted at the joins, before the freeze: they can expire before the
        # outage is as long as the reported one, so the outage lasts at least their life + skew.
        await asyncio.sleep(max(0.0, ttl_s + SKEW_S - (time.monotonic() - frozen_at)))

        for name in ("Ada", "Bob"):
            connection = sessions[name].connection
            assert connection is not None
            connection.transport.abort()
        for name in ("Ada", "Bob"):
            back = await watchers[name].expect(Joined, timeout=WAIT_S)
            assert back.kind == "reconnected" and back.answer.reconnected
            assert back.mc_id == other.mc_id
            assert sessions[name].participant_id == before[name]
            refused = [e.why for e in watchers[name].seen(Reconnecting)]
            assert any("invalid_binding" in why for why in refused), refused
            users = [p.user_id for p in back.answer.roster]
            assert sorted(users) == ["ada", "bob", "cy"]  # Cy still within his grace
            assert back.answer.host_id == before["Ada"]
        assert time.monotonic() - frozen_at > ttl_s + SKEW_S  # the outage outlived the tokens
        exposition = await asyncio.to_thread(other.metrics)
        assert (metric(exposition, "mc_binding_refusals_total", reason="expired") or 0) >= 2

        # Cy's grace, started with Ada's and Bob's at the takeover, runs out.
        for name in ("Ada", "Bob"):
            left = await watchers[name].expect(
                ParticipantLeft, lambda e: e.participant_id == before["Cy"], timeout=grace_s + 20
            )
            assert left.reason is LeaveReason.TIMEOUT
        # Anything the meeting had queued by then reaches the clients before this update.
        await bob.set_muted(True)
        for name in ("Ada", "Bob"):
            await watchers[name].expect(
                ParticipantUpdated,
                lambda e: e.participant.participant_id == before["Bob"] and e.participant.muted,
            )
            assert departures(watchers[name]) == [(before["Cy"], LeaveReason.TIMEOUT)]
            roster = sessions[name].roster
            assert sorted(roster) == sorted([before["Ada"], before["Bob"]])
            assert sorted(p.user_id for p in roster.values()) == ["ada", "bob"]
            assert all(p.connected for p in roster.values())
            assert sessions[name].host_id == before["Ada"]
        host, entries = await asyncio.to_thread(roster_in_redis, redis_db)
        assert host == before["Ada"]
        assert {pid: e["user_id"] for pid, e in entries.items()} == {
            before["Ada"]: "ada",
            before["Bob"]: "bob",
        }
        assert all(e["connected"] for e in entries.values())

        # The frozen MC comes back: fenced out, it changes nothing and tells nobody anything.
        frozen.send_signal(signal.SIGCONT)

        def fenced_out() -> bool:
            value = metric(frozen.metrics(), "mc_fenced_out_total")
            return value is not None and value >= 1

        await poll(fenced_out, what=f"{frozen.mc_id} finding itself fenced out")
        assert redis_db.get(f"meeting:{{{MEETING}}}:owner") == other.mc_id
        assert await asyncio.to_thread(roster_in_redis, redis_db) == (host, entries)
        for name in ("Ada", "Bob"):
            assert departures(watchers[name]) == [(before["Cy"], LeaveReason.TIMEOUT)]
            assert sessions[name].ended is None and sessions[name].mc_id == other.mc_id
        assert departures(watchers["Cy"]) == []
        frozen.kill()
    finally:
        for session in sessions.values():
            await session.aclose()
        for watcher in watchers.values():
            await watcher.aclose()
