"""One room per meeting, one token per participant, against a real Janus: a token admits its
participant into its meeting's room and nowhere else, and stops working when revoked."""

from __future__ import annotations

import pytest

from darktower.mh.errors import InvalidMhRequest, MhAtCapacity
from darktower.mh.rooms import MediaRooms, RoomLimits
from tests.support.janus import RunningJanus
from tests.support.janus_client import janus_client, requires_janus

pytestmark = [requires_janus, pytest.mark.timeout(90)]

UNAUTHORIZED = 403  # Janus core: JANUS_ERROR_UNAUTHORIZED (no or unknown token)
ROOM_UNAUTHORIZED = 433  # VideoRoom: JANUS_VIDEOROOM_ERROR_UNAUTHORIZED (not in allowed list)
NO_SUCH_ROOM = 426


async def test_a_token_admits_its_participant_into_its_meetings_room(
    running_janus: RunningJanus,
) -> None:
    rooms = MediaRooms(running_janus.admin)
    alice = await rooms.register("meeting-a", "alice")
    async with janus_client(running_janus.ws_url, alice.token) as client:
        assert (await client.create_session())["janus"] == "success"
        assert (await client.attach_videoroom())["janus"] == "success"
        joined = await client.join(alice.room)
        assert joined.get("videoroom") == "joined", joined
        assert joined["room"] == alice.room


async def test_another_meetings_token_cannot_enter_the_room(running_janus: RunningJanus) -> None:
    rooms = MediaRooms(running_janus.admin)
    alice = await rooms.register("meeting-a", "alice")
    mallory = await rooms.register("meeting-b", "mallory")
    assert mallory.room != alice.room
    async with janus_client(running_janus.ws_url, mallory.token) as client:
        # Her token opens a session (it is a valid token of this Janus) ...
        assert (await client.create_session())["janus"] == "success"
        assert (await client.attach_videoroom())["janus"] == "success"
        # ... but not meeting-a's room.
        refused = await client.join(alice.room)
        assert refused.get("error_code") == ROOM_UNAUTHORIZED, refused
    # Alice still gets in: the refusal changed nothing.
    async with janus_client(running_janus.ws_url, alice.token) as client:
        await client.create_session()
        await client.attach_videoroom()
        assert (await client.join(alice.room)).get("videoroom") == "joined"


@pytest.mark.parametrize(
    "token",
    ["", "forged-" + "x" * 40, "x" * 5000],
    ids=["none", "forged", "oversized"],
)
async def test_no_session_without_a_token_the_mh_issued(
    running_janus: RunningJanus, token: str
) -> None:
    rooms = MediaRooms(running_janus.admin)
    await rooms.register("meeting-a", "alice")
    async with janus_client(running_janus.ws_url, token) as client:
        answer = await client.create_session()
        assert answer["janus"] == "error"
        assert answer["error"]["code"] == UNAUTHORIZED


async def test_registering_again_revokes_the_old_token(running_janus: RunningJanus) -> None:
    rooms = MediaRooms(running_janus.admin)
    first = await rooms.register("meeting-a", "alice")
    second = await rooms.register("meeting-a", "alice")
    assert second.token != first.token and second.room == first.room
    async with janus_client(running_janus.ws_url, first.token) as client:
        assert (await client.create_session())["error"]["code"] == UNAUTHORIZED
    async with janus_client(running_janus.ws_url, second.token) as client:
        assert (await client.create_session())["janus"] == "success"


async def test_ending_a_participant_then_the_meeting(running_janus: RunningJanus) -> None:
    rooms = MediaRooms(running_janus.admin)
    alice = await rooms.register("meeting-a", "alice")
    bob = await rooms.register("meeting-a", "bob")
    assert await rooms.end("meeting-a", "alice")
    async with janus_client(running_janus.ws_url, alice.token) as client:
        assert (await client.create_session())["error"]["code"] == UNAUTHORIZED
    assert await rooms.end("meeting-a")
    assert rooms.room_of("meeting-a") is None
    async with janus_client(running_janus.ws_url, bob.token) as client:
        assert (await client.create_session())["error"]["code"] == UNAUTHORIZED
    listed = await running_janus.admin.room_request({"request": "exists", "room": bob.room})
    assert listed["exists"] is False
    assert not await rooms.end("meeting-a")  # nothing left to end


@pytest.mark.parametrize(
    ("meeting", "participant", "field"),
    [
        ("", "alice", "meeting_id"),
        ("m" * 256, "alice", "meeting_id"),
        ("a{b}", "alice", "meeting_id"),
        ("meeting-a", "", "participant_id"),
        ("meeting-a", "x" * 256, "participant_id"),
    ],
)
async def test_malformed_ids_are_refused_and_nothing_is_created(
    running_janus: RunningJanus, meeting: str, participant: str, field: str
) -> None:
    rooms = MediaRooms(running_janus.admin)
    with pytest.raises(InvalidMhRequest) as caught:
        await rooms.register(meeting, participant)
    assert caught.value.field == field
    assert rooms.meetings == 0
    assert (await running_janus.admin.room_request({"request": "list"}))["list"] == []


async def test_room_and_participant_limits(running_janus: RunningJanus) -> None:
    rooms = MediaRooms(running_janus.admin, RoomLimits(max_rooms=1, max_participants_per_room=2))
    await rooms.register("meeting-a", "alice")
    await rooms.register("meeting-a", "bob")
    await rooms.register("meeting-a", "bob")  # re-registering is not one more
    with pytest.raises(MhAtCapacity):
        await rooms.register("meeting-a", "carol")
    with pytest.raises(MhAtCapacity):
        await rooms.register("meeting-b", "dave")
    assert rooms.meetings == 1


async def test_the_room_is_private_to_clients(running_janus: RunningJanus) -> None:
    rooms = MediaRooms(running_janus.admin)
    alice = await rooms.register("meeting-a", "alice")
    async with janus_client(running_janus.ws_url, alice.token) as client:
        await client.create_session()
        await client.attach_videoroom()
        listed = await client.request(
            {"janus": "message", "body": {"request": "list"}}, want_event=False
        )
        data = listed.get("plugindata", {}).get("data", {})
        assert data.get("list") == [], listed
        # And a client cannot create rooms of its own (the VideoRoom admin key).
        created = await client.request(
            {
                "janus": "message",
                "body": {"request": "create", "room": 42, "admin_key": "guessed"},
            }
        )
        error = created.get("plugindata", {}).get("data", {})
        assert error.get("error_code") == ROOM_UNAUTHORIZED, created
    # Nor destroy the meeting's room (the room secret).
    async with janus_client(running_janus.ws_url, alice.token) as client:
        await client.create_session()
        await client.attach_videoroom()
        destroyed = await client.request(
            {
                "janus": "message",
                "body": {"request": "destroy", "room": alice.room, "secret": "guessed"},
            }
        )
        data = destroyed.get("plugindata", {}).get("data", {})
        assert data.get("error_code") == ROOM_UNAUTHORIZED, destroyed
    assert rooms.room_of("meeting-a") == alice.room
    exists = await running_janus.admin.room_request({"request": "exists", "room": alice.room})
    assert exists["exists"] is True


def test_a_registration_never_shows_its_token() -> None:
    from darktower.mh.rooms import Registration

    shown = repr(Registration(token="very-secret-token", room=7))
    assert "very-secret-token" not in shown and "7" in shown
