"""The MC's meeting API RPCs (`EndMeeting`, `RemoveParticipant`, `MuteParticipant`,
`GetMeetingRoster`) over real gRPC on loopback against in-process MCs on one Redis: only a GC
token for this MC is admitted (a token for another MC, an MH's, none: refused, nothing
changed), malformed ids are INVALID_ARGUMENT, a meeting not hosted here answers hosted=false,
settings from the assignment are validated, stored with the meeting in Redis and enforced."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import grpc.aio
import pytest
from redis import asyncio as aioredis

from darktower.auth.fleet_keys import FleetKeys, generate_fleet_keys
from darktower.common.meeting_settings import MeetingSettings
from darktower.wire.dark_tower import internal_pb2 as pb
from tests.mc.test_audience import gc_token, start_bound
from tests.support.mc import RunningMc, assign_request

StartMc = Callable[..., Awaitable[RunningMc]]


@pytest.fixture
def keys(tmp_path: Path) -> FleetKeys:
    return generate_fleet_keys(tmp_path / "keys")


def command(meeting_id: str, identity: str = "", muted: bool = False) -> pb.MeetingCommandRequest:
    return pb.MeetingCommandRequest(
        meeting_id=meeting_id, identity=identity, muted=muted, requesting_gc_id="gc-1"
    )


def with_settings(meeting_id: str, **settings: object) -> pb.AssignMeetingWithMhRequest:
    request = assign_request(meeting_id)
    request.settings.CopyFrom(pb.MeetingSettings(**settings))
    return request


async def test_only_a_gc_token_for_this_mc_may_command_it(
    start_mc: StartMc, keys: FleetKeys, redis_client: aioredis.Redis
) -> None:
    mc_1 = await start_bound(start_mc, keys, "mc-1")
    mc_2 = await start_bound(start_mc, keys, "mc-2")
    assert (await mc_1.assign("standup")).accepted
    stored = await redis_client.hgetall("meeting:{standup}:state")
    Metadata = tuple[tuple[str, str], ...]

    async def end(md: Metadata) -> object:
        return await mc_1.stub.EndMeeting(command("standup"), metadata=md)

    async def remove(md: Metadata) -> object:
        return await mc_1.stub.RemoveParticipant(command("standup", "ada"), metadata=md)

    async def mute(md: Metadata) -> object:
        return await mc_1.stub.MuteParticipant(command("standup", "ada", True), metadata=md)

    async def read(md: Metadata) -> object:
        return await mc_1.stub.GetMeetingRoster(command("standup"), metadata=md)

    calls: list[Callable[[Metadata], Awaitable[object]]] = [end, remove, mute, read]
    for call in calls:
        refusals: list[tuple[Metadata, grpc.StatusCode]] = [
            ((), grpc.StatusCode.UNAUTHENTICATED),
            (mc_2.metadata, grpc.StatusCode.UNAUTHENTICATED),  # mc-2's token replayed
            (gc_token(keys.add("mh", "mh-1"), audience="mc-1"), grpc.StatusCode.UNAUTHENTICATED),
            ((("authorization", "Bearer forged.token.here"),), grpc.StatusCode.UNAUTHENTICATED),
        ]
        for metadata, code in refusals:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(metadata)
            assert info.value.code() in (code, grpc.StatusCode.PERMISSION_DENIED)
    # Nothing changed: still hosted, the removal never recorded.
    assert "standup" in mc_1.app.controller.meetings
    assert await redis_client.hgetall("meeting:{standup}:state") == stored
    roster = await mc_1.stub.GetMeetingRoster(command("standup"), metadata=mc_1.metadata)
    assert roster.hosted and list(roster.participants) == []


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (command(""), "meeting_id"),
        (command("a/b"), "meeting_id"),
        (command("x" * 256), "meeting_id"),
        (command("standup", "bad id"), "identity"),
        (command("standup", "u" * 65), "identity"),
        (command("standup", ""), "identity"),
    ],
)
async def test_malformed_commands_are_invalid_argument(
    mc: RunningMc, request_: pb.MeetingCommandRequest, field: str
) -> None:
    assert (await mc.assign("standup")).accepted
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await mc.stub.RemoveParticipant(request_, metadata=mc.metadata)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith(f"{field}:")
    assert "standup" in mc.app.controller.meetings


async def test_a_meeting_not_hosted_here_is_hosted_false(mc: RunningMc) -> None:
    for answer in (
        await mc.stub.EndMeeting(command("elsewhere"), metadata=mc.metadata),
        await mc.stub.RemoveParticipant(command("elsewhere", "ada"), metadata=mc.metadata),
        await mc.stub.MuteParticipant(command("elsewhere", "ada"), metadata=mc.metadata),
        await mc.stub.GetMeetingRoster(command("elsewhere"), metadata=mc.metadata),
    ):
        assert not answer.hosted
    assert mc.app.controller.meetings == {}


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"metadata": "x" * 4097}, "settings.metadata"),
        ({"max_participants": 100_001}, "settings.max_participants"),
        ({"empty_timeout_seconds": 7 * 24 * 3600 + 1}, "settings.empty_timeout_seconds"),
    ],
)
async def test_bad_settings_are_refused_before_anything_is_taken(
    mc: RunningMc, redis_client: aioredis.Redis, settings: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await mc.stub.AssignMeetingWithMh(with_settings("set", **settings), metadata=mc.metadata)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith(f"{field}:")
    assert await redis_client.get("meeting:{set}:owner") is None


async def test_settings_are_stored_with_the_meeting_and_enforced(
    start_mc: StartMc, redis_client: aioredis.Redis
) -> None:
    mc = await start_mc(max_participants_per_meeting=50)
    request = with_settings("set", max_participants=500, empty_timeout_seconds=60, metadata="m")
    assert (await mc.stub.AssignMeetingWithMh(request, metadata=mc.metadata)).accepted
    roster = await mc.stub.GetMeetingRoster(command("set"), metadata=mc.metadata)
    # The cap never above the MC's own; the timeout and metadata as given.
    assert (roster.settings.max_participants, roster.settings.empty_timeout_seconds) == (50, 60)
    assert roster.settings.metadata == "m"
    stored = await redis_client.hget("meeting:{set}:state", "settings")
    assert MeetingSettings.from_json(stored.decode()) == MeetingSettings(500, 60, "m")
    assert json.loads(stored)["metadata"] == "m"
    # An idempotent re-assignment without settings keeps them.
    assert (await mc.assign("set")).accepted
    again = await mc.stub.GetMeetingRoster(command("set"), metadata=mc.metadata)
    assert again.settings == roster.settings
    # A removal before anyone joined is recorded (the identity is barred) and says 0.
    removed = await mc.stub.RemoveParticipant(command("set", "ada"), metadata=mc.metadata)
    assert (removed.hosted, removed.affected) == (True, 0)
    assert await redis_client.hget("meeting:{set}:state", "removed:ada") is not None
    ended = await mc.stub.EndMeeting(command("set"), metadata=mc.metadata)
    assert ended.hosted
    assert not (await mc.stub.GetMeetingRoster(command("set"), metadata=mc.metadata)).hosted
    assert await redis_client.exists("meeting:{set}:state") == 0
