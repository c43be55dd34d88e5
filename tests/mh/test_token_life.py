"""A media token is short-lived until used, against a real Janus: one that no Janus handle
carries `token_claim_seconds` after it was issued is revoked by the MH's sweep (Janus refuses
it from then on: no session, no room), while a used one keeps working for its participant; a
token revoked so, an old one (registered again) and another meeting's are all refused.

The MH's clock is a test clock moved by hand, so nothing here waits for real time."""

from __future__ import annotations

import pytest

from darktower.mh.rooms import MediaRooms, RoomLimits
from tests.support.janus import RunningJanus
from tests.support.janus_client import janus_client, requires_janus

pytestmark = [requires_janus, pytest.mark.timeout(90)]

UNAUTHORIZED = 403  # Janus core: no or unknown token
ROOM_UNAUTHORIZED = 433  # VideoRoom: not in the room's allowed list
CLAIM_SECONDS = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_an_unused_token_expires_a_used_one_lives_on(running_janus: RunningJanus) -> None:
    clock = Clock()
    rooms = MediaRooms(
        running_janus.admin, RoomLimits(token_claim_seconds=CLAIM_SECONDS), clock=clock
    )
    alice = await rooms.register("meeting-a", "alice")
    bob = await rooms.register("meeting-a", "bob")  # a grant nobody uses (a backup's, a leak)
    async with janus_client(running_janus.ws_url, alice.token) as a:
        await a.create_session()
        await a.attach_videoroom()
        assert (await a.join(alice.room)).get("videoroom") == "joined"
        # Within the window nothing is revoked; Alice's token is seen in use.
        clock.now += CLAIM_SECONDS - 1
        assert await rooms.sweep() == (0, 0)
        # Past it: Bob's never-used token is revoked, Alice's stays.
        clock.now += 2
        assert await rooms.sweep() == (0, 1)
        assert await rooms.sweep() == (0, 0)  # once
        async with janus_client(running_janus.ws_url, bob.token) as b:
            assert (await b.create_session())["error"]["code"] == UNAUTHORIZED
        # Alice's session goes on (a request with her token), and her token still opens
        # another one into her room, as long as her registration lasts.
        answer = await a.request({"janus": "keepalive"})
        assert answer["janus"] == "ack", answer
        async with janus_client(running_janus.ws_url, alice.token) as again:
            assert (await again.create_session())["janus"] == "success"
            await again.attach_videoroom()
            assert (await again.join(alice.room)).get("videoroom") == "joined"
    # Once she leaves, her token goes too (as before).
    assert await rooms.end("meeting-a", "alice")
    async with janus_client(running_janus.ws_url, alice.token) as a:
        assert (await a.create_session())["error"]["code"] == UNAUTHORIZED
    # The meeting ends with Bob's token revoked already: the room goes all the same.
    assert await rooms.end("meeting-a")
    assert rooms.room_of("meeting-a") is None


async def test_a_token_registered_anew_starts_a_new_window(running_janus: RunningJanus) -> None:
    clock = Clock()
    rooms = MediaRooms(
        running_janus.admin, RoomLimits(token_claim_seconds=CLAIM_SECONDS), clock=clock
    )
    first = await rooms.register("meeting-a", "bob")
    clock.now += CLAIM_SECONDS / 2
    second = await rooms.register("meeting-a", "bob")  # a reconnect: new token, old revoked
    clock.now += CLAIM_SECONDS / 2 + 1
    # The first token's deadline passed, but it was revoked already; the second is in time.
    assert await rooms.sweep() == (0, 0)
    async with janus_client(running_janus.ws_url, first.token) as client:
        assert (await client.create_session())["error"]["code"] == UNAUTHORIZED
    async with janus_client(running_janus.ws_url, second.token) as client:
        assert (await client.create_session())["janus"] == "success"
        await client.attach_videoroom()
        assert (await client.join(second.room)).get("videoroom") == "joined"
        clock.now += CLAIM_SECONDS
        assert await rooms.sweep() == (0, 0)  # in use: kept


async def test_another_meetings_token_stays_out_while_it_lives(running_janus: RunningJanus) -> None:
    clock = Clock()
    rooms = MediaRooms(
        running_janus.admin, RoomLimits(token_claim_seconds=CLAIM_SECONDS), clock=clock
    )
    alice = await rooms.register("meeting-a", "alice")
    mallory = await rooms.register("meeting-b", "mallory")
    async with janus_client(running_janus.ws_url, mallory.token) as m:
        await m.create_session()
        await m.attach_videoroom()
        # In use, so never expired ... and still refused by Alice's room.
        clock.now += CLAIM_SECONDS + 1
        assert await rooms.sweep() == (0, 1)  # Alice's unused one goes
        refused = await m.join(alice.room)
        assert refused.get("error_code") == ROOM_UNAUTHORIZED, refused


async def test_a_media_move_keeps_a_live_token_and_replaces_a_dead_one(
    running_janus: RunningJanus,
) -> None:
    """`keep_token` (the MC re-registering after its primary MH died): a participant that holds
    a live token here keeps it (a client that moved here by itself goes on); one whose token
    the sweep revoked gets a fresh one; a plain register (a reconnect) always replaces it."""
    clock = Clock()
    rooms = MediaRooms(
        running_janus.admin, RoomLimits(token_claim_seconds=CLAIM_SECONDS), clock=clock
    )
    alice = await rooms.register("meeting-a", "alice")
    assert await rooms.register("meeting-a", "alice", keep_token=True) == alice
    clock.now += CLAIM_SECONDS + 1
    assert await rooms.sweep() == (0, 1)  # never used: revoked
    moved = await rooms.register("meeting-a", "alice", keep_token=True)
    assert moved.token != alice.token and moved.room == alice.room
    async with janus_client(running_janus.ws_url, moved.token) as client:
        assert (await client.create_session())["janus"] == "success"
        await client.attach_videoroom()
        assert (await client.join(moved.room)).get("videoroom") == "joined"
    reconnected = await rooms.register("meeting-a", "alice")
    assert reconnected.token != moved.token
    async with janus_client(running_janus.ws_url, moved.token) as client:
        assert (await client.create_session())["error"]["code"] == UNAUTHORIZED
