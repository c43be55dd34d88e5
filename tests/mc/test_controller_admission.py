"""The controller's admission steps as the Assigner takes them (`reserve`, `commit`): decided at
once when nothing is queued, in mailbox order behind queued messages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest
import redis.asyncio as aioredis

from darktower.actors import ActorStopped
from darktower.fencing import RedisFencedStore
from darktower.mc.admission import Rejection
from darktower.mc.controller import (
    Abort,
    Commit,
    MeetingControllerActor,
    Pending,
    Rejected,
    Reserve,
    Reserved,
    SetDraining,
)
from darktower.mc.meeting import MeetingActor
from darktower.mc.validation import MhRole, MhTarget

MHS = (MhTarget("mh-1", "https://mh-1.example", MhRole.PRIMARY),)


@pytest.fixture
async def controller(redis_client: aioredis.Redis) -> AsyncIterator[MeetingControllerActor]:
    actor = MeetingControllerActor(
        "mc-a",
        store=RedisFencedStore(redis_client),
        max_meetings=10,
        max_participants=100,
        participant_estimate=1,
        is_ready=lambda: True,
        touch_interval=3600,
    )
    actor.start()
    yield actor
    await actor.stop()


def at_once(step: Coroutine[Any, Any, Any]) -> Any:
    """The result of `step` if it finishes without waiting for anything (no mailbox trip)."""
    try:
        step.send(None)
    except StopIteration as done:
        return done.value
    step.close()
    raise AssertionError("the step waited for the mailbox")


@pytest.mark.timeout(10)
async def test_an_idle_controller_reserves_and_commits_at_once(
    controller: MeetingControllerActor, redis_client: aioredis.Redis
) -> None:
    assert controller.idle
    assert isinstance(at_once(controller.reserve("m-1")), Reserved)
    assert isinstance(at_once(controller.reserve("m-1")), Pending)  # being admitted
    lease = await RedisFencedStore(redis_client).acquire("m-1", "mc-a")
    meeting = at_once(controller.commit(Commit(lease, MHS)))
    assert isinstance(meeting, MeetingActor)
    assert controller.meetings == {"m-1": meeting}


@pytest.mark.timeout(10)
async def test_behind_queued_messages_a_reservation_waits_its_turn(
    controller: MeetingControllerActor,
) -> None:
    assert isinstance(await controller.reserve("m-1"), Reserved)
    controller.send(Abort("m-1"))  # queued: the reservation it releases is still held
    assert not controller.idle
    assert isinstance(await controller.reserve("m-1"), Reserved)  # after the Abort: free
    # An operator's drain sent just before an assignment refuses it, as through the mailbox.
    controller.send(SetDraining())
    assert await controller.reserve("m-2") == Rejected(Rejection.DRAINING)
    assert await controller.ask(Reserve("m-3")) == Rejected(Rejection.DRAINING)


@pytest.mark.timeout(10)
async def test_a_commit_without_a_reservation_fails_the_caller_not_the_controller(
    controller: MeetingControllerActor, redis_client: aioredis.Redis
) -> None:
    lease = await RedisFencedStore(redis_client).acquire("m-9", "mc-a")
    with pytest.raises(RuntimeError, match="without a reservation"):
        await controller.commit(Commit(lease, MHS))
    assert controller.running and controller.meetings == {}


@pytest.mark.timeout(10)
async def test_a_stopping_controller_takes_no_reservation(
    controller: MeetingControllerActor,
) -> None:
    controller.request_stop()
    assert not controller.idle
    with pytest.raises(ActorStopped):
        await controller.reserve("m-1")
