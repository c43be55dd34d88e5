"""Host mute enforced on the MH, against a real Janus: `MediaRooms.mute` moderates the audio
streams of the publisher handles attached with the participant's token (whatever display name
the client gave), the client cannot undo it, streams published later are moderated by
`enforce_mutes`, and nobody else's audio is touched.

The publishers here send a real SDP offer (audio mid "0", video mid "1") to Janus over its
WebSocket API; no packet needs to flow for Janus to create the streams it moderates. Janus
tells every publisher in the room of a moderation (`moderation: muted` for a feed and mid),
which is what the tests read.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import pytest

from darktower.mh.errors import InvalidMhRequest
from darktower.mh.rooms import MediaRooms
from tests.support.janus import RunningJanus
from tests.support.janus_client import JanusClient, janus_client, requires_janus

pytestmark = [requires_janus, pytest.mark.timeout(90)]


def fake_offer() -> str:
    fingerprint = ":".join(f"{b:02X}" for b in secrets.token_bytes(32))
    common = [
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        f"a=ice-ufrag:{secrets.token_hex(4)}",
        f"a=ice-pwd:{secrets.token_hex(12)}",
        "a=ice-options:trickle",
        f"a=fingerprint:sha-256 {fingerprint}",
        "a=setup:actpass",
        "a=sendonly",
        "a=rtcp-mux",
    ]
    lines = [
        "v=0",
        f"o=- {secrets.randbelow(10**9)} 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "a=msid-semantic: WMS s",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        *common,
        "a=mid:0",
        "a=msid:s a",
        "a=rtpmap:111 opus/48000/2",
        "a=ssrc:1111 cname:t",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        *common,
        "a=mid:1",
        "a=msid:s v",
        "a=rtpmap:96 VP8/90000",
        "a=ssrc:2222 cname:t",
    ]
    return "\r\n".join(lines) + "\r\n"


async def publish(client: JanusClient, room: int, display: str) -> int:
    """Join `room` as a publisher and publish audio and video; the feed id."""
    joined = await client.join(room, display=display)
    assert joined.get("videoroom") == "joined", joined
    answer = await client.request(
        {
            "janus": "message",
            "body": {"request": "publish", "audio": True, "video": True},
            "jsep": {"type": "offer", "sdp": fake_offer()},
        },
        want_event=True,
    )
    data = answer.get("plugindata", {}).get("data", {})
    assert data.get("configured") == "ok", answer
    return int(joined["id"])


async def moderations(client: JanusClient, seconds: float = 3.0) -> list[dict[str, Any]]:
    """The moderation events `client` receives within `seconds`."""
    found: list[dict[str, Any]] = []
    ws = client._ws
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        try:
            raw = await asyncio.wait_for(ws.recv(), left)
        except TimeoutError:
            break
        data = json.loads(raw).get("plugindata", {}).get("data", {})
        if "moderation" in data:
            found.append(data)
    return found


async def test_host_mute_stops_the_participants_audio_and_sticks(
    running_janus: RunningJanus,
) -> None:
    rooms = MediaRooms(running_janus.admin)
    alice = await rooms.register("meeting-a", "alice")
    bob = await rooms.register("meeting-a", "bob")
    async with (
        janus_client(running_janus.ws_url, alice.token) as a,
        janus_client(running_janus.ws_url, bob.token) as b,
    ):
        for client in (a, b):
            await client.create_session()
            await client.attach_videoroom()
        # A modified client: it calls itself "bob" in the room; its token still names it.
        alice_feed = await publish(a, alice.room, display="bob")
        bob_feed = await publish(b, bob.room, display="bob")
        assert await rooms.mute("meeting-a", "alice", True) == 1  # its one audio stream
        seen = await moderations(b)
        assert [(m["id"], m["mid"], m["moderation"]) for m in seen] == [(alice_feed, "0", "muted")]
        # Asking Janus to publish audio again does not lift it, and the sweep finds nothing new.
        await a.request(
            {"janus": "message", "body": {"request": "configure", "audio": True}},
            want_event=True,
        )
        assert await rooms.enforce_mutes() == 0
        # A second publisher handle of the same token (a republish) is moderated by the sweep.
        async with janus_client(running_janus.ws_url, alice.token) as again:
            await again.create_session()
            await again.attach_videoroom()
            second_feed = await publish(again, alice.room, display="someone")
            assert await rooms.enforce_mutes() == 1
            seen = await moderations(b)
            assert [(m["id"], m["mid"], m["moderation"]) for m in seen] == [
                (second_feed, "0", "muted")
            ]
        # Unmuting forwards alice's audio again; bob's own audio was never touched.
        assert await rooms.mute("meeting-a", "alice", False) >= 1
        seen = await moderations(b)
        assert (alice_feed, "0", "unmuted") in [(m["id"], m["mid"], m["moderation"]) for m in seen]
        assert all(m["id"] != bob_feed for m in seen)
        assert await rooms.enforce_mutes() == 0


async def test_mute_of_anyone_else_moderates_nothing(running_janus: RunningJanus) -> None:
    rooms = MediaRooms(running_janus.admin)
    alice = await rooms.register("meeting-a", "alice")
    await rooms.register("meeting-b", "mallory")
    async with janus_client(running_janus.ws_url, alice.token) as a:
        await a.create_session()
        await a.attach_videoroom()
        await publish(a, alice.room, display="alice")
        # Alice's id in another meeting, an unknown meeting, a participant never registered.
        assert await rooms.mute("meeting-b", "alice", True) == 0
        assert await rooms.mute("meeting-c", "alice", True) == 0
        assert await rooms.mute("meeting-a", "nobody", True) == 0
        assert await rooms.enforce_mutes() == 0
        assert await moderations(a, 1.0) == []
    for meeting, participant in (("", "alice"), ("meeting-a", "x" * 5000), ("m\n", "alice")):
        with pytest.raises(InvalidMhRequest):
            await rooms.mute(meeting, participant, True)


async def test_a_participant_who_leaves_is_no_longer_muted(running_janus: RunningJanus) -> None:
    rooms = MediaRooms(running_janus.admin)
    await rooms.register("meeting-a", "alice")
    assert await rooms.mute("meeting-a", "alice", True) == 0  # publishes nothing yet
    assert await rooms.end("meeting-a", "alice")
    again = await rooms.register("meeting-a", "alice")
    async with janus_client(running_janus.ws_url, again.token) as a:
        await a.create_session()
        await a.attach_videoroom()
        await publish(a, again.room, display="alice")
        assert await rooms.enforce_mutes() == 0
