"""Live migration when an MC drains (README "Rolling upgrades"), on a fleet in the test's loop.

A real GC (SQLite, gRPC, HTTP), two real MCs (gRPC, client WebSockets, Redis) and a simulated
MH, all on loopback (`tests.client.in_process_fleet`); the clients are `ClientSession`s and raw
WebSockets. The drain is `McApp.drain()`, what SIGTERM runs (`tests/e2e/test_migration_e2e.py`
sends the signal to real processes).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from darktower.auth.access_tokens import mint_access_token
from darktower.auth.api_keys import generate_api_key, write_api_key_file
from darktower.client.session import ClientSession, Ended, Joined, Redirected
from darktower.fencing import FencedOut, Lease, RedisFencedStore
from darktower.mc.server import McApp
from darktower.signaling.protocol import (
    ErrorCode,
    ErrorMsg,
    JoinAnswer,
    LeaveReason,
    ParticipantLeft,
    Redirect,
)
from tests.client import InProcessFleet, Watcher, in_process_fleet
from tests.mc.signaling_client import SignalingClient

pytestmark = pytest.mark.timeout(60)

MEETINGS = ("mig-a", "mig-b", "mig-c")


@pytest.fixture
async def fleet(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> AsyncIterator[InProcessFleet]:
    async with in_process_fleet(
        tmp_path,
        redis_url,
        mcs=2,
        mc_overrides={"meeting_touch_seconds": 0.3, "drain_seconds": 8},
    ) as started:
        yield started


async def gc_join(fleet: InProcessFleet, meeting: str, user_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        answer = await http.post(
            f"{fleet.gc_url}/v1/meetings/{meeting}/join",
            json={"user_id": user_id, "display_name": user_id},
        )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def gc_meeting(fleet: InProcessFleet, meeting: str) -> dict[str, Any]:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        answer = await http.get(f"{fleet.gc_url}/v1/meetings/{meeting}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def hosting(fleet: InProcessFleet, meeting: str) -> McApp:
    return next(mc for mc in fleet.mcs if meeting in mc.controller.meetings)


async def test_a_drain_moves_every_meeting_with_its_clients_to_another_mc(
    fleet: InProcessFleet, redis_client: aioredis.Redis
) -> None:
    sessions: dict[str, list[tuple[ClientSession, Watcher]]] = {m: [] for m in MEETINGS}
    try:
        for meeting in MEETINGS:
            for name in ("ada", "bob"):
                session = ClientSession(
                    fleet.gc_url, meeting, display_name=name, user_id=name, open_timeout=5
                )
                await session.join()
                sessions[meeting].append((session, Watcher(session)))
        drained = hosting(fleet, MEETINGS[0])
        other = next(mc for mc in fleet.mcs if mc is not drained)
        moving = [m for m in MEETINGS if m in drained.controller.meetings]
        before = {
            m: (
                [s.participant_id for s, _ in sessions[m]],
                sessions[m][0][0].host_id,
                drained.controller.meetings[m].lease.generation,
            )
            for m in moving
        }
        notices = sample("mc_meeting_end_notices_total", result="ok")
        gc_notices = sample("gc_meeting_end_notices_total", result="ok")

        started = time.monotonic()
        await drained.drain()
        drain_s = time.monotonic() - started

        report = drained.drain_report
        assert report is not None
        assert sorted(report.migrated) == sorted(moving)
        assert report.ended == {} and report.failed == {}
        assert report.redirected_clients == 2 * len(moving)
        for meeting in moving:
            ids, host, generation = before[meeting]
            for session, watcher in sessions[meeting]:
                moved = await watcher.expect(Redirected)
                assert moved.reason == "migration" and moved.mc_id == other.settings.id
                back = await watcher.expect(Joined)
                assert back.kind == "reconnected" and back.answer.reconnected
                assert back.mc_id == other.settings.id
                assert session.signaling_url == moved.signaling_url
            for session, _ in sessions[meeting]:
                assert session.host_id == host
            assert [s.participant_id for s, _ in sessions[meeting]] == ids
            # Nobody saw anyone leave; nobody's session ended.
            for _, watcher in sessions[meeting]:
                assert watcher.seen(ParticipantLeft) == [] and watcher.seen(Ended) == []
            assert meeting in other.controller.meetings
            lease = other.controller.meetings[meeting].lease
            owner = await redis_client.get(f"meeting:{{{meeting}}}:owner")
            gen = int(await redis_client.get(f"meeting:{{{meeting}}}:gen"))
            assert owner in (other.settings.id, other.settings.id.encode())
            assert gen == lease.generation > generation
            assert (await gc_meeting(fleet, meeting))["mc_id"] == other.settings.id
            # The drained MC's late write is refused by Redis itself.
            late = Lease(meeting, drained.settings.id, generation)
            with pytest.raises(FencedOut):
                await RedisFencedStore(redis_client).fenced_hset(late, {"late": "write"})
            assert await redis_client.hget(f"meeting:{{{meeting}}}:state", "late") is None
        # No meeting ended: no notice from the MC, none at the GC.
        assert sample("mc_meeting_end_notices_total", result="ok") == notices
        assert sample("gc_meeting_end_notices_total", result="ok") == gc_notices
        assert drain_s < 8
    finally:
        for opened in sessions.values():
            for session, watcher in opened:
                await watcher.aclose()
                await session.aclose()


async def test_a_redirect_is_good_once_and_only_for_its_own_session(
    fleet: InProcessFleet, caplog: pytest.LogCaptureFixture
) -> None:
    """Raw WebSockets: the redirect, its replay, someone else's binding token, a stale
    correlation id; no token of a redirect reaches a log line (the GC's, the MCs')."""
    caplog.set_level(logging.DEBUG)
    ada_join = await gc_join(fleet, "mig-raw", "ada")
    bob_join = await gc_join(fleet, "mig-raw", "bob")
    ada = await SignalingClient.open(ada_join["signaling_url"])
    bob = await SignalingClient.open(bob_join["signaling_url"])
    clients = [ada, bob]
    try:
        ada_answer = await ada.join(ada_join["join_token"])
        bob_answer = await bob.join(bob_join["join_token"])
        drained = hosting(fleet, "mig-raw")
        other = next(mc for mc in fleet.mcs if mc is not drained)
        await drained.drain()
        ada_redirect = await ada.expect(Redirect)
        bob_redirect = await bob.expect(Redirect)
        await ada.wait_closed()
        assert ada_redirect.correlation_id == ada_answer.correlation_id
        assert ada_redirect.signaling_url.endswith(f":{other.client_port}/v1/signaling")
        # Ada presents Bob's binding token for her own session: refused.
        forged = await SignalingClient.open(ada_redirect.signaling_url)
        clients.append(forged)
        fresh = await gc_join(fleet, "mig-raw", "ada")
        await forged.send(
            {
                "v": 1,
                "type": "join",
                "token": fresh["join_token"],
                "correlation_id": ada_redirect.correlation_id,
                "binding_token": bob_redirect.binding_token,
            }
        )
        refused = await forged.expect(ErrorMsg)
        assert refused.code == ErrorCode.INVALID_BINDING
        # A stale correlation id (no such session): refused.
        stale = await SignalingClient.open(ada_redirect.signaling_url)
        clients.append(stale)
        again = await gc_join(fleet, "mig-raw", "ada")
        await stale.send(
            {
                "v": 1,
                "type": "join",
                "token": again["join_token"],
                "correlation_id": str(uuid.uuid4()),
                "binding_token": ada_redirect.binding_token,
            }
        )
        refused = await stale.expect(ErrorMsg)
        assert refused.code == ErrorCode.SESSION_EXPIRED
        # Bob follows his redirect: the same participant, reconnected.
        moved_bob = await SignalingClient.open(bob_redirect.signaling_url)
        clients.append(moved_bob)
        back = await moved_bob.join(
            bob_redirect.token,
            correlation_id=bob_redirect.correlation_id,
            binding_token=bob_redirect.binding_token,
        )
        assert back.reconnected and back.participant_id == bob_answer.participant_id
        # The same redirect replayed: its join token is spent.
        replay = await SignalingClient.open(bob_redirect.signaling_url)
        clients.append(replay)
        await replay.send(
            {
                "v": 1,
                "type": "join",
                "token": bob_redirect.token,
                "correlation_id": bob_redirect.correlation_id,
                "binding_token": bob_redirect.binding_token,
            }
        )
        refused = await replay.expect(ErrorMsg)
        assert refused.code == ErrorCode.TOKEN_REUSED
        # Bob's session (his fresh binding token) with a join token of Ada's: refused.
        stolen = await SignalingClient.open(ada_redirect.signaling_url)
        clients.append(stolen)
        ada_token = await gc_join(fleet, "mig-raw", "ada")
        await stolen.send(
            {
                "v": 1,
                "type": "join",
                "token": ada_token["join_token"],
                "correlation_id": bob_redirect.correlation_id,
                "binding_token": back.binding_token,
            }
        )
        refused = await stolen.expect(ErrorMsg)
        assert refused.code == ErrorCode.INVALID_BINDING
        # Ada's own redirect still works after all that: her state was kept.
        moved_ada = await SignalingClient.open(ada_redirect.signaling_url)
        clients.append(moved_ada)
        back = await moved_ada.join(
            ada_redirect.token,
            correlation_id=ada_redirect.correlation_id,
            binding_token=ada_redirect.binding_token,
        )
        assert isinstance(back, JoinAnswer)
        assert back.reconnected and back.participant_id == ada_answer.participant_id
        assert {p.participant_id for p in back.roster} == {
            ada_answer.participant_id,
            bob_answer.participant_id,
        }
        assert not [m for m in moved_bob.history if isinstance(m, ParticipantLeft)]
        for redirect in (ada_redirect, bob_redirect):
            for secret in (redirect.token, redirect.binding_token):
                assert secret not in caplog.text
    finally:
        for client in clients:
            await client.close()


async def test_a_drain_with_no_mc_to_take_the_meetings_ends_them_only_at_the_deadline(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> None:
    async with in_process_fleet(
        tmp_path, redis_url, mcs=1, mc_overrides={"meeting_touch_seconds": 0.3}
    ) as fleet:
        session = ClientSession(fleet.gc_url, "lonely", display_name="ada", open_timeout=5)
        await session.join()
        watcher = Watcher(session)
        try:
            (mc,) = fleet.mcs
            started = time.monotonic()
            drain = asyncio.create_task(mc.drain(deadline_seconds=4))
            left = await watcher.expect(ParticipantLeft, timeout=10)
            ended_after = time.monotonic() - started
            await drain
            assert left.reason == LeaveReason.MEETING_ENDED
            # Retried until the deadline less its margin (4 s - 2 s), only then ended.
            assert ended_after >= 1.8
            report = mc.drain_report
            assert report is not None
            assert report.migrated == [] and report.failed == {}
            assert list(report.ended) == ["lonely"]
            assert report.ended["lonely"] == "all_draining"
            assert sample("mc_migrations_total", result="not_placed") >= 1
        finally:
            await watcher.aclose()
            await session.aclose()


async def test_an_operator_drain_needs_an_admin_token_and_then_moves_the_meetings(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> None:
    key, other_key = generate_api_key(), generate_api_key()
    key_file = tmp_path / "api-key.json"
    write_api_key_file(key_file, key)
    async with in_process_fleet(
        tmp_path,
        redis_url,
        mcs=2,
        mc_overrides={"meeting_touch_seconds": 0.3, "drain_seconds": 8},
        # Guests allowed (as in the dev fleet): a drain still needs the admin grant.
        gc_overrides={"api_key_files": [key_file]},
    ) as fleet:
        session = ClientSession(fleet.gc_url, "ops", display_name="ada", open_timeout=5)
        await session.join()
        watcher = Watcher(session)
        try:
            mc = hosting(fleet, "ops")
            url = f"{fleet.gc_url}/v1/controllers/{mc.settings.id}/drain"

            def bearer(token: str) -> dict[str, str]:
                return {"Authorization": f"Bearer {token}"}

            admin = mint_access_token(key, identity="ops", meeting_id=None, admin=True)
            participant = mint_access_token(key, identity="eve", meeting_id="ops")
            forged = mint_access_token(other_key, identity="ops", meeting_id=None, admin=True)
            async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
                refusals = [
                    (await http.post(url), 401, "token_missing"),
                    (await http.post(url, headers=bearer(participant)), 403, "admin_required"),
                    (await http.post(url, headers=bearer(forged)), 401, "unknown_key"),
                    (
                        await http.post(
                            f"{fleet.gc_url}/v1/controllers/mc-nobody/drain",
                            headers=bearer(admin),
                        ),
                        404,
                        "unknown_controller",
                    ),
                    (
                        await http.post(
                            f"{fleet.gc_url}/v1/controllers/bad%20id/drain", headers=bearer(admin)
                        ),
                        400,
                        "controller_id",
                    ),
                ]
                for answer, status, reason in refusals:
                    assert answer.status_code == status, answer.text
                    assert answer.json()["reason"] == reason
                    assert admin not in answer.text and forged not in answer.text
                # Nothing changed: the MC still admits, its meeting is still there.
                assert not mc.controller.draining and not mc.drain_requested.is_set()
                assert "ops" in mc.controller.meetings
                accepted = await http.post(url, headers=bearer(admin))
            assert accepted.status_code == 202, accepted.text
            assert accepted.json() == {"controller_id": mc.settings.id, "meetings": 1}
            # What `serve` does when the event is set: the drain, as on SIGTERM.
            await asyncio.wait_for(mc.drain_requested.wait(), 5)
            assert mc.controller.draining
            await mc.drain()
            back = await watcher.expect(Joined, lambda e: e.kind == "reconnected")
            assert back.mc_id != mc.settings.id
            assert mc.drain_report is not None and mc.drain_report.migrated == ["ops"]
        finally:
            await watcher.aclose()
            await session.aclose()
