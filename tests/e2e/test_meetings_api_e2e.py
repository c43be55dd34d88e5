"""The meeting API on real processes (README "Application API"): a GC without guests, two MCs
and an MH; participants are real WebSocket clients (`ClientSession`).

Settings reach the MC and hold there (cap, empty timeout, metadata in `join_answer`); the
roster the API lists is the connected clients', also after the hosting MC is SIGKILLed and
the clients rejoin elsewhere; end, kick and mute reach the clients; every unauthorized or
malformed call is refused with the roster untouched; a command for a meeting whose MC is dead
answers 503, never a silent success. (`darktower meetings`: test_meetings_cli_e2e.py.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from darktower.auth.access_tokens import mint_access_token
from darktower.auth.api_keys import ApiKey, generate_api_key, write_api_key_file
from darktower.client.session import ClientSession, Ended, Joined, JoinRefused, SessionEvent
from darktower.signaling.protocol import LeaveReason, Muted, ParticipantLeft
from tests.e2e.fleet import Fleet, GcProc
from tests.support.http_abuse import stream_body
from tests.support.waiting import eventually

# Real processes on a shared two-core machine: starting the fleet is the slow part.
pytestmark = pytest.mark.timeout(240)

METADATA = '{"topic": "weekly sync", "room": "Ünïcode ✓"}'
EVENT_TIMEOUT_S = 20.0


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def start(fleet: Fleet, database_url: str, tmp_path: Path) -> tuple[GcProc, ApiKey, str]:
    """A GC with an API key and guests off, mc-1, mc-2 and one MH, all up; and an admin
    token of that key."""
    key = generate_api_key()
    key_file = tmp_path / "api-key.json"
    write_api_key_file(key_file, key)
    gc = fleet.start_gc(
        database_url, wait=False, GC_API_KEY_FILES=str(key_file), GC_ALLOW_GUESTS="false"
    )
    for mc_id in ("mc-1", "mc-2"):
        fleet.start_mc(gc, mc_id)
    fleet.start_mh_group(gc, {"mh-1": "zone-a"})
    gc.wait_ready()
    admin = mint_access_token(key, identity="ops", meeting_id=None, admin=True)
    gc.client.headers.update(bearer(admin))  # for the fleet's own readiness polls
    fleet.wait_fleet(gc, mcs=["mc-1", "mc-2"], mhs=["mh-1"])
    return gc, key, admin


def client(gc: GcProc, token: str | None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=gc.http_url, headers=bearer(token) if token else {}, timeout=30
    )


async def next_event(
    session: ClientSession, events: AsyncIterator[SessionEvent], want: Callable[[Any], bool]
) -> Any:
    """The first event of `session` that `want` accepts (bounded)."""

    async def find() -> Any:
        async for event in events:
            if want(event):
                return event
        raise AssertionError(f"{session.user_id}'s session ended before the event")

    return await asyncio.wait_for(find(), EVENT_TIMEOUT_S)


async def roster(api: httpx.AsyncClient, meeting: str) -> dict[str, dict[str, Any]]:
    answer = await api.get(f"/v1/meetings/{meeting}/participants")
    assert answer.status_code == 200, answer.text
    return {p["identity"]: p for p in answer.json()["participants"]}


async def test_settings_commands_and_refusals_reach_real_clients(
    fleet: Fleet, database_url: str, tmp_path: Path
) -> None:
    gc, key, admin = start(fleet, database_url, tmp_path)
    async with client(gc, admin) as api, client(gc, None) as anyone:
        await _settings_commands_and_refusals(gc, key, api, anyone)


async def _settings_commands_and_refusals(
    gc: GcProc, key: ApiKey, api: httpx.AsyncClient, anyone: httpx.AsyncClient
) -> None:
    def token(identity: str, meeting: str = "town", host: bool = False) -> str:
        role = "host" if host else "participant"
        return mint_access_token(key, identity=identity, meeting_id=meeting, role=role)

    # Malformed creations are refused and place nothing.
    bad_bodies: list[tuple[dict[str, Any], str]] = [
        ({"meeting_id": "town", "metadata": "x" * 4097}, "metadata"),
        ({"meeting_id": "town", "metadata": "é" * 2049}, "metadata"),  # 4098 bytes
        ({"meeting_id": "bad id!"}, "meeting_id"),
        ({"meeting_id": "town", "max_participants": 0}, "max_participants"),
        ({"meeting_id": "town", "max_participants": "2"}, "max_participants"),
        ({"meeting_id": "town", "empty_timeout_seconds": -1}, "empty_timeout_seconds"),
        ({"meeting_id": "town", "colour": "red"}, "colour"),
    ]
    for body, reason in bad_bodies:
        refused = await api.post("/v1/meetings", json=body)
        assert refused.status_code == 400, (body, refused.text)
        assert (refused.json()["error"], refused.json()["reason"]) == ("invalid_argument", reason)
    # Sent as a client that keeps writing would: the GC answers 413 and hangs up mid-body
    # (httpx would see only the reset), so the answer is read as it arrives.
    oversized = await stream_body(gc.http_url, "/v1/meetings", total=1_100_000)
    assert oversized.status == 413, oversized
    assert (await api.get("/v1/meetings/town")).status_code == 404
    assert (await api.get("/v1/meetings")).json()["total"] == 0

    settings = {"max_participants": 2, "empty_timeout_seconds": 2, "metadata": METADATA}
    created = await api.post("/v1/meetings", json={"meeting_id": "town", **settings})
    assert created.status_code == 200, created.text
    placed = created.json()
    assert placed["created"] is True and placed["mc_id"] in ("mc-1", "mc-2")
    assert placed["settings"] == settings
    again = await api.post("/v1/meetings", json={"meeting_id": "town", "max_participants": 9})
    assert again.json() | {"created": True} == placed  # the same meeting, its own settings
    assert again.json()["created"] is False

    ada = ClientSession(
        gc.http_url, "town", display_name="Ada", access_token=token("ada", host=True)
    )
    bob = ClientSession(gc.http_url, "town", display_name="Bob", access_token=token("bob"))
    carol = ClientSession(gc.http_url, "town", display_name="Carol", access_token=token("carol"))
    async with ada, bob, carol:
        ada_events, bob_events = ada.events(), bob.events()
        answer = await ada.join()
        assert answer.metadata == METADATA  # the settings' metadata, in join_answer
        assert (await bob.join()).metadata == METADATA
        with pytest.raises(JoinRefused) as full:
            await carol.join()
        assert full.value.code == "meeting_full"

        listed = await roster(api, "town")
        assert set(listed) == {"ada", "bob"}
        assert listed["ada"]["participant_id"] == answer.participant_id
        assert listed["ada"]["host"] and listed["ada"]["role"] == "host"
        assert all(p["connected"] and not p["host_muted"] for p in listed.values())
        shown = (await api.get("/v1/meetings/town")).json()
        assert (shown["live_participants"], shown["connected"], shown["mc_answer"]) == (2, 2, "ok")
        assert shown["settings"] == settings

        await _refusals(api, anyone, key, token)
        assert await roster(api, "town") == listed  # every refusal left the meeting as it was

        # The meeting's host mutes through the API: as a host_mute, by "api".
        muted = await anyone.post(
            "/v1/meetings/town/participants/bob/mute", headers=bearer(token("ada", host=True))
        )
        assert muted.status_code == 200 and muted.json()["sessions"] == 1, muted.text
        told = await next_event(bob, bob_events, lambda e: isinstance(e, Muted))
        assert (told.participant_id, told.muted, told.by) == (bob.participant_id, True, "api")
        assert (await roster(api, "town"))["bob"]["host_muted"] is True

        # Kick: bob is told `removed`, Ada sees him leave, and his token no longer admits him.
        kicked = await api.delete("/v1/meetings/town/participants/bob")
        assert kicked.json() == {"meeting_id": "town", "identity": "bob", "sessions": 1}
        ended = await next_event(bob, bob_events, lambda e: isinstance(e, Ended))
        assert ended.reason == LeaveReason.REMOVED.value
        left = await next_event(ada, ada_events, lambda e: isinstance(e, ParticipantLeft))
        assert (left.participant_id, left.reason) == (bob.participant_id, LeaveReason.REMOVED)
        async with ClientSession(
            gc.http_url, "town", display_name="Bob", access_token=token("bob")
        ) as bob_again:
            with pytest.raises(JoinRefused) as removed:
                await bob_again.join()
        assert removed.value.code == "removed"
        assert set(await roster(api, "town")) == {"ada"}

        # End: Ada is told `meeting_ended`; the meeting is gone; a later join starts anew.
        end = await api.delete("/v1/meetings/town")
        assert end.json() == {"meeting_id": "town", "ended": True, "participants": 1}
        finished = await next_event(ada, ada_events, lambda e: isinstance(e, Ended))
        assert finished.reason == LeaveReason.MEETING_ENDED.value
    assert (await api.get("/v1/meetings/town")).status_code == 404
    gone = await api.delete("/v1/meetings/town")
    assert (gone.status_code, gone.json()["reason"]) == (404, "meeting_not_found")
    async with ClientSession(
        gc.http_url, "town", display_name="Bob", access_token=token("bob")
    ) as fresh:
        anew = await fresh.join()  # a new meeting: no removal, no settings
        assert anew.metadata is None and len(anew.roster) == 1
        await fresh.leave()

    # Empty timeout: a participant who drops (no leave) is in its grace, not connected: the
    # meeting ends once nobody has been connected for empty_timeout_seconds.
    brief = await api.post("/v1/meetings", json={"meeting_id": "brief", "empty_timeout_seconds": 1})
    assert brief.json()["settings"]["empty_timeout_seconds"] == 1
    async with ClientSession(
        gc.http_url, "brief", display_name="Ada", access_token=token("ada", meeting="brief")
    ) as dropping:
        await dropping.join()

    async def brief_gone() -> bool:
        return (await api.get("/v1/meetings/brief")).status_code == 404

    await eventually(brief_gone, timeout=15, what="brief ended by its empty timeout")


async def _refusals(
    api: httpx.AsyncClient,
    anyone: httpx.AsyncClient,
    key: ApiKey,
    token: Callable[..., str],
) -> None:
    """No token, a participant's token, another meeting's host, a forged signature, an expired
    token, a host on an admin route, bad ids: each refused with its reason."""
    forged = mint_access_token(
        ApiKey(key_id=key.key_id, secret="F" * 43), identity="ops", meeting_id=None, admin=True
    )
    expired = mint_access_token(
        key, identity="ops", meeting_id=None, admin=True, ttl_seconds=60, now=time.time() - 600
    )
    host_routes = {
        ("POST", "/v1/meetings/town/participants/bob/mute"),
        ("GET", "/v1/meetings/town/participants"),
        ("GET", "/v1/meetings/town"),
    }
    calls = [
        ("DELETE", "/v1/meetings/town"),
        ("DELETE", "/v1/meetings/town/participants/bob"),
        ("POST", "/v1/meetings"),
        *sorted(host_routes),
    ]
    for method, path in calls:
        body = {"meeting_id": "town"} if path == "/v1/meetings" else None
        other_host = "wrong_meeting" if (method, path) in host_routes else "admin_required"
        for credential, status, reason in (
            (None, 401, "token_missing"),
            (token("bob"), 403, "admin_required"),
            (token("eve", meeting="other", host=True), 403, other_host),
            (forged, 401, "token_invalid"),
            (expired, 401, "token_expired"),
        ):
            headers = bearer(credential) if credential else {}
            refused = await anyone.request(method, path, headers=headers, json=body)
            assert (refused.status_code, refused.json()["reason"]) == (status, reason), (
                method,
                path,
                refused.text,
            )
    host = bearer(token("ada", host=True))
    for method, path in calls[:3]:  # a host may read and mute; not end, remove or create
        refused = await anyone.request(method, path, headers=host)
        assert refused.json()["reason"] == "admin_required", refused.text
    for method, path in (
        ("GET", "/v1/meetings/bad%20id/participants"),
        ("POST", "/v1/meetings/town/participants/bad%20id/mute"),
        ("DELETE", "/v1/meetings/town/participants/" + "u" * 65),
        ("GET", "/v1/meetings/" + "a" * 256),
    ):
        refused = await api.request(method, path)
        assert refused.status_code == 400, (path, refused.text)
    nobody = await api.post("/v1/meetings/town/participants/nobody/mute")
    assert (nobody.status_code, nobody.json()["reason"]) == (404, "participant_not_found")


async def test_the_roster_after_a_failover_and_commands_to_a_dead_mc(
    fleet: Fleet, database_url: str, tmp_path: Path
) -> None:
    gc, key, admin = start(fleet, database_url, tmp_path)
    async with client(gc, admin) as api:
        await _failover(fleet, key, gc, api)


async def _failover(fleet: Fleet, key: ApiKey, gc: GcProc, api: httpx.AsyncClient) -> None:
    placed = await api.post(
        "/v1/meetings", json={"meeting_id": "fo", "max_participants": 2, "metadata": "kept"}
    )
    first_mc = placed.json()["mc_id"]
    second_mc = "mc-2" if first_mc == "mc-1" else "mc-1"

    def token(identity: str) -> str:
        return mint_access_token(key, identity=identity, meeting_id="fo")

    ada = ClientSession(gc.http_url, "fo", display_name="Ada", access_token=token("ada"))
    bob = ClientSession(gc.http_url, "fo", display_name="Bob", access_token=token("bob"))
    async with ada, bob:
        ada_events, bob_events = ada.events(), bob.events()
        await ada.join()
        await bob.join()
        assert set(await roster(api, "fo")) == {"ada", "bob"}

        fleet.mcs[first_mc].kill()  # SIGKILL
        # Its MC is dead: a command is a 503 with the reason, never a silent success.
        for method, path in (
            ("POST", "/v1/meetings/fo/participants/bob/mute"),
            ("DELETE", "/v1/meetings/fo/participants/bob"),
            ("DELETE", "/v1/meetings/fo"),
            ("GET", "/v1/meetings/fo/participants"),
        ):
            refused = await api.request(method, path)
            assert refused.status_code == 503, (method, path, refused.text)
            assert refused.json()["reason"] in {"mc_unreachable", "mc_timeout"}, refused.text

        # The clients rejoin through the GC, which moves the meeting to the other MC.
        for session, events in ((ada, ada_events), (bob, bob_events)):
            back = await next_event(
                session, events, lambda e: isinstance(e, Joined) and e.kind != "joined"
            )
            assert back.mc_id == second_mc
            assert back.answer.metadata == "kept"  # settings loaded from Redis by the new MC

        async def moved_and_whole() -> bool:
            answer = await api.get("/v1/meetings/fo/participants")
            if answer.status_code != 200:
                return False
            body = answer.json()
            people = {p["identity"]: p for p in body["participants"]}
            return (
                body["mc_id"] == second_mc
                and set(people) == {"ada", "bob"}
                and all(p["connected"] for p in people.values())
            )

        await eventually(moved_and_whole, timeout=EVENT_TIMEOUT_S, what="the roster moved")
        listed = await roster(api, "fo")
        assert {p["participant_id"] for p in listed.values()} == {
            ada.participant_id,
            bob.participant_id,
        }
        async with ClientSession(
            gc.http_url, "fo", display_name="Carol", access_token=token("carol")
        ) as carol:
            with pytest.raises(JoinRefused) as full:
                await carol.join()
        assert full.value.code == "meeting_full"  # the cap, from Redis, on the new MC
        ended = await api.delete("/v1/meetings/fo")
        assert ended.status_code == 200 and ended.json()["participants"] == 2, ended.text
        for session, events in ((ada, ada_events), (bob, bob_events)):
            out = await next_event(session, events, lambda e: isinstance(e, Ended))
            assert out.reason == LeaveReason.MEETING_ENDED.value
