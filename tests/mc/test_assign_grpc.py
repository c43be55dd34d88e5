"""AssignMeetingWithMh over real gRPC against a real Redis: admission, exactness, fencing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import grpc
import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from darktower.fencing import RedisFencedStore
from darktower.wire.dark_tower import internal_pb2 as pb
from tests.support.mc import RunningMc, assign_request

StartMc = Callable[..., Awaitable[RunningMc]]


async def owners(redis_client: aioredis.Redis) -> dict[str, str]:
    found: dict[str, str] = {}
    async for key in redis_client.scan_iter(match="meeting:*:owner"):
        value = await redis_client.get(key)
        found[key.decode()] = value.decode()
    return found


def metric(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_accepted_meeting_is_owned_in_redis_with_its_mh_list(
    mc: RunningMc, redis_client: aioredis.Redis
) -> None:
    answer = await mc.assign("standup", mhs=2)
    assert answer.accepted and answer.rejection_reason == pb.REJECTION_REASON_UNSPECIFIED
    assert await redis_client.get("meeting:{standup}:owner") == b"mc-test"
    assert int(await redis_client.get("meeting:{standup}:gen")) > 0
    stored = json.loads(await redis_client.get("meeting:{standup}:mh"))
    assert [m["mh_id"] for m in stored["mhs"]] == ["mh-0", "mh-1"]
    assert set(mc.app.controller.meetings) == {"standup"}


async def test_fifty_concurrent_assignments_with_room_for_ten(
    start_mc: StartMc, redis_client: aioredis.Redis
) -> None:
    mc = await start_mc(max_meetings=10)
    answers = await asyncio.gather(*(mc.assign(f"m-{i}") for i in range(50)))
    accepted = [a for a in answers if a.accepted]
    refused = [a for a in answers if not a.accepted]
    assert len(accepted) == 10
    assert len(refused) == 40
    assert {a.rejection_reason for a in refused} == {pb.REJECTION_REASON_AT_CAPACITY}
    assert len(mc.app.controller.meetings) == 10
    assert all(m.running for m in mc.app.controller.meetings.values())
    stored = await owners(redis_client)
    assert len(stored) == 10 and set(stored.values()) == {"mc-test"}
    assert {k.split("{")[1].split("}")[0] for k in stored} == set(mc.app.controller.meetings)


@pytest.mark.parametrize(("max_participants", "accepted"), [(9, False), (10, True)])
async def test_participant_limit_counts_the_estimate_for_a_new_meeting(
    start_mc: StartMc, max_participants: int, accepted: bool
) -> None:
    # No one connected yet; a new meeting is estimated at 10 participants.
    mc = await start_mc(max_participants=max_participants)
    answer = await mc.assign("estimated")
    assert answer.accepted is accepted
    if not accepted:
        assert answer.rejection_reason == pb.REJECTION_REASON_AT_CAPACITY
        assert mc.app.controller.meetings == {}


async def test_reassignment_of_a_hosted_meeting_is_idempotent(
    mc: RunningMc, redis_client: aioredis.Redis
) -> None:
    assert (await mc.assign("weekly", mhs=1)).accepted
    generation = await redis_client.get("meeting:{weekly}:gen")
    actor = mc.app.controller.meetings["weekly"]
    assert (await mc.assign("weekly", mhs=3)).accepted
    assert await redis_client.get("meeting:{weekly}:gen") == generation
    assert mc.app.controller.meetings["weekly"] is actor
    stored = json.loads(await redis_client.get("meeting:{weekly}:mh"))
    assert len(stored["mhs"]) == 3


async def test_concurrent_assignments_of_one_meeting_make_one_actor(
    mc: RunningMc, redis_client: aioredis.Redis
) -> None:
    answers = await asyncio.gather(*(mc.assign("same") for _ in range(20)))
    assert all(a.accepted for a in answers)
    assert list(mc.app.controller.meetings) == ["same"]
    assert await owners(redis_client) == {"meeting:{same}:owner": "mc-test"}


async def test_fenced_out_meeting_stops_and_is_taken_back_with_a_new_generation(
    start_mc: StartMc, redis_client: aioredis.Redis
) -> None:
    mc = await start_mc(meeting_touch_seconds=0.1)
    assert (await mc.assign("moved")).accepted
    first = int(await redis_client.get("meeting:{moved}:gen"))
    before = metric("mc_fenced_out_total")
    # Another MC takes the meeting over (the GC placed it elsewhere).
    other = RedisFencedStore(redis_client)
    taken = await other.acquire("moved", "mc-other")
    assert taken.generation > first
    for _ in range(100):
        if "moved" not in mc.app.controller.meetings:
            break
        await asyncio.sleep(0.05)
    assert "moved" not in mc.app.controller.meetings
    assert metric("mc_fenced_out_total") == before + 1
    assert await redis_client.get("meeting:{moved}:owner") == b"mc-other"
    # The GC sends it back: this MC takes it over again, above the other's generation.
    assert (await mc.assign("moved")).accepted
    assert int(await redis_client.get("meeting:{moved}:gen")) > taken.generation
    assert await redis_client.get("meeting:{moved}:owner") == b"mc-test"
    assert mc.app.controller.meetings["moved"].running


async def test_reassignment_right_after_a_takeover_takes_the_meeting_back(
    mc: RunningMc, redis_client: aioredis.Redis
) -> None:
    # The touch interval is long here: the re-assignment's own fenced write finds the loss.
    assert (await mc.assign("bounce")).accepted
    old_actor = mc.app.controller.meetings["bounce"]
    taken = await RedisFencedStore(redis_client).acquire("bounce", "mc-other")
    assert (await mc.assign("bounce")).accepted
    assert int(await redis_client.get("meeting:{bounce}:gen")) > taken.generation
    assert await redis_client.get("meeting:{bounce}:owner") == b"mc-test"
    assert mc.app.controller.meetings["bounce"] is not old_actor
    await old_actor.wait(2)
    assert not old_actor.running and old_actor.end_reason == "fenced_out"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: setattr(r, "meeting_id", ""), "meeting_id"),
        (lambda r: setattr(r, "meeting_id", "x" * 256), "meeting_id"),
        (lambda r: setattr(r, "meeting_id", "a/b"), "meeting_id"),
        (lambda r: setattr(r, "meeting_id", "a{b}"), "meeting_id"),
        (lambda r: r.ClearField("mh_assignments"), "mh_assignments"),
        (
            lambda r: r.mh_assignments.extend(
                pb.MhAssignment(mh_id=f"x-{i}", webtransport_endpoint="https://x.example")
                for i in range(16)
            ),
            "mh_assignments",
        ),
        (
            lambda r: setattr(r.mh_assignments[0], "webtransport_endpoint", "ftp://mh.example"),
            "mh_assignments[0].webtransport_endpoint",
        ),
        (lambda r: setattr(r, "requesting_gc_id", "g" * 256), "requesting_gc_id"),
    ],
    ids=["empty", "256-bytes", "slash", "braces", "no-mh", "17-mhs", "ftp", "long-gc-id"],
)
async def test_invalid_requests_name_the_field_and_change_nothing(
    mc: RunningMc,
    redis_client: aioredis.Redis,
    mutate: Callable[[pb.AssignMeetingWithMhRequest], object],
    field: str,
) -> None:
    request = assign_request("valid-id")
    mutate(request)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await mc.stub.AssignMeetingWithMh(request, metadata=mc.metadata, timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith(f"{field}:")
    assert await redis_client.dbsize() == 0
    assert mc.app.controller.meetings == {}


async def test_legacy_rpcs_answer_not_accepted_and_change_nothing(
    mc: RunningMc, redis_client: aioredis.Redis
) -> None:
    legacy = await mc.stub.Assign(
        pb.AssignMeeting(meeting_id="old", config=pb.MeetingConfig(display_name="x")),
        metadata=mc.metadata,
    )
    assert not legacy.accepted and "AssignMeetingWithMh" in legacy.reason
    registered = await mc.stub.RegisterController(
        pb.RegisterMeetingController(controller_id="mc-x", region="r"), metadata=mc.metadata
    )
    assert not registered.accepted
    beat = await mc.stub.SendHeartbeat(pb.Heartbeat(controller_id="mc-x"), metadata=mc.metadata)
    assert not beat.acknowledged
    assert await redis_client.dbsize() == 0
    assert mc.app.controller.meetings == {}


async def test_draining_mc_refuses_with_draining(mc: RunningMc) -> None:
    from darktower.mc.controller import SetDraining

    mc.app.controller.send(SetDraining())
    answer = await mc.assign("late")
    assert not answer.accepted and answer.rejection_reason == pb.REJECTION_REASON_DRAINING


async def test_unauthenticated_call_never_reaches_admission(
    mc: RunningMc, redis_client: aioredis.Redis
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await mc.stub.AssignMeetingWithMh(assign_request("nope"), timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await redis_client.dbsize() == 0


async def test_health_endpoints_and_metrics(mc: RunningMc) -> None:
    assert (await mc.assign("metered")).accepted
    async with httpx.AsyncClient(base_url=mc.health_url) as http:
        assert (await http.get("/health/live")).status_code == 200
        assert (await http.get("/health/ready")).status_code == 200
        text = (await http.get("/metrics")).text
    for name in (
        "mc_meetings_active 1.0",
        'mc_assignments_total{reason="",result="accepted"}',
        "mc_fenced_out_total",
        'mc_actor_mailbox_depth{actor_type="meeting"}',
        'mc_redis_latency_seconds_bucket{le="0.005",op="acquire"}',
        "mc_ready 1.0",
    ):
        assert name in text, name
