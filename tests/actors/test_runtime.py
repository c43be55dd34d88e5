"""The actor runtime: ordering, ask/reply, supervision, cancellation, mailbox metrics."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from prometheus_client import REGISTRY

from darktower.actors import Actor, ActorStopped
from tests.support.waiting import eventually


class Recorder(Actor[Any]):
    """A test actor; `kind` gives it its own metric label so counts are one test's alone."""

    actor_type = "test_recorder"
    mailbox_warning = 3
    mailbox_critical = 6

    def __init__(self, name: str, gate: asyncio.Event | None = None, kind: str = "") -> None:
        super().__init__(name)
        if kind:
            self.actor_type = kind  # type: ignore[misc]  # per-instance label, tests only
        self.seen: list[Any] = []
        self.stopped = False
        self.exits: list[tuple[str, BaseException | None]] = []
        self.gate = gate

    async def handle(self, message: Any) -> Any:
        if self.gate is not None:
            await self.gate.wait()
        if message == "boom":
            raise ValueError("boom")
        if message == "sleep":
            await asyncio.sleep(3600)
        self.seen.append(message)
        return f"reply:{message}"

    async def on_stop(self) -> None:
        self.stopped = True

    def child_exited(self, child: Actor[Any], exc: BaseException | None) -> None:
        self.exits.append((child.name, exc))


def panics(kind: str) -> float:
    return REGISTRY.get_sample_value("mc_actor_panic_total", {"actor_type": kind}) or 0.0


async def test_messages_are_handled_in_order_and_ask_returns_the_reply() -> None:
    actor = Recorder("a")
    actor.start()
    for i in range(5):
        actor.send(i)
    assert await actor.ask("last") == "reply:last"
    assert actor.seen == [0, 1, 2, 3, 4, "last"]
    await actor.stop()
    assert actor.stopped and not actor.running


async def test_stop_drains_queued_messages_then_refuses_new_ones() -> None:
    actor = Recorder("a")
    actor.start()
    actor.send(1)
    actor.send(2)
    await actor.stop()
    assert actor.seen == [1, 2]
    with pytest.raises(ActorStopped):
        actor.send(3)
    with pytest.raises(ActorStopped):
        await actor.ask(4)


async def test_crashed_child_is_noticed_logged_counted_and_parent_survives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    parent = Recorder("parent")
    parent.start()
    child = Recorder("child", kind="test_crasher")
    before = panics("test_crasher")
    parent.spawn(child)
    with caplog.at_level(logging.ERROR), pytest.raises(ValueError, match="boom"):
        await child.ask("boom")
    await child.wait(1)
    assert panics("test_crasher") == before + 1
    assert [name for name, _ in parent.exits] == ["child"]
    assert isinstance(parent.exits[0][1], ValueError)
    assert any("crashed" in r.getMessage() for r in caplog.records)
    assert child not in parent.children
    assert await parent.ask("still here") == "reply:still here"
    await parent.stop()


async def test_normal_child_exit_is_reported_without_a_panic() -> None:
    parent = Recorder("parent")
    parent.start()
    child = Recorder("child", kind="test_quiet")
    parent.spawn(child)
    child.request_stop()
    await child.wait(1)
    assert parent.exits == [("child", None)]
    assert panics("test_quiet") == 0
    await parent.stop()


async def test_stopping_the_parent_stops_its_children_first() -> None:
    parent = Recorder("parent")
    parent.start()
    children = [Recorder(f"c{i}") for i in range(3)]
    for c in children:
        parent.spawn(c)
        c.send("x")
    await parent.stop()
    assert all(c.stopped and not c.running and c.seen == ["x"] for c in children)


async def test_cancelling_the_parent_cancels_its_children() -> None:
    parent = Recorder("parent")
    parent.start()
    child = Recorder("child")
    parent.spawn(child)
    child.send("sleep")
    await eventually(lambda: child.mailbox_depth == 0, timeout=5, what="the child sleeping")
    assert parent._task is not None
    parent._task.cancel()
    await parent.wait(2)
    assert not child.running and child.stopped


async def test_stop_deadline_cancels_a_stuck_actor() -> None:
    actor = Recorder("stuck")
    actor.start()
    actor.send("sleep")
    await eventually(lambda: actor.mailbox_depth == 0, timeout=5, what="the actor sleeping")
    await actor.stop(timeout=0.05)
    assert not actor.running and actor.stopped


async def test_pending_askers_get_actor_stopped_when_it_crashes() -> None:
    gate = asyncio.Event()
    actor = Recorder("a", gate, kind="test_pending")
    actor.start()
    first = asyncio.ensure_future(actor.ask("boom"))
    second = asyncio.ensure_future(actor.ask("later"))
    await asyncio.sleep(0)
    gate.set()
    with pytest.raises(ValueError, match="boom"):
        await first
    with pytest.raises(ActorStopped):
        await second


async def test_mailbox_depth_and_thresholds_are_exported(caplog: pytest.LogCaptureFixture) -> None:
    gate = asyncio.Event()
    actor = Recorder("deep", gate, kind="test_deep")
    actor.start()
    over = {"actor_type": "test_deep", "level": "warning"}
    with caplog.at_level(logging.WARNING):
        for i in range(5):
            actor.send(i)
    assert REGISTRY.get_sample_value("mc_actor_mailbox_depth", {"actor_type": "test_deep"}) == 5
    assert REGISTRY.get_sample_value("mc_actor_mailbox_threshold", over) == 3
    assert REGISTRY.get_sample_value("mc_actor_mailbox_over_threshold_total", over) == 1
    assert any("over the warning threshold" in r.getMessage() for r in caplog.records)
    gate.set()
    await actor.stop()
    assert REGISTRY.get_sample_value("mc_actor_mailbox_depth", {"actor_type": "test_deep"}) == 0


class Batcher(Actor[Any]):
    """Takes ints queued in a row together (at most 4); anything else one at a time."""

    actor_type = "test_batcher"
    batch_types = (int,)
    max_batch = 4

    def __init__(self, name: str, gate: asyncio.Event) -> None:
        super().__init__(name)
        self.gate = gate
        self.steps: list[list[Any]] = []

    async def handle(self, message: Any) -> Any:
        await self.gate.wait()
        self.steps.append([message])
        return f"one:{message}"

    async def handle_batch(self, messages: Any) -> list[Any]:
        await self.gate.wait()
        if "boom" in [str(m) for m in messages] or -1 in messages:
            raise ValueError("boom")
        self.steps.append(list(messages))
        return [f"batch:{m}" for m in messages]


async def test_messages_of_batch_types_queued_in_a_row_are_handled_together() -> None:
    gate = asyncio.Event()
    actor = Batcher("b", gate)
    actor.start()
    first = asyncio.ensure_future(actor.ask("first"))  # holds the actor while the rest queue
    await asyncio.sleep(0)
    asks = [asyncio.ensure_future(actor.ask(m)) for m in [1, 2, 3, 4, 5, 6, "x", 7, "y", 8, 9]]
    await asyncio.sleep(0)
    assert actor.mailbox_depth == 11
    gate.set()
    replies = await asyncio.gather(first, *asks)
    # In mailbox order; a batch ends at another type or at max_batch; a lone int goes to handle.
    assert actor.steps == [["first"], [1, 2, 3, 4], [5, 6], ["x"], [7], ["y"], [8, 9]]
    assert replies == [
        "one:first",
        *(f"batch:{i}" for i in range(1, 7)),
        "one:x",
        "one:7",
        "one:y",
        "batch:8",
        "batch:9",
    ]
    assert actor.mailbox_depth == 0
    await actor.stop()


async def test_a_crashing_batch_fails_each_of_its_askers_and_the_later_ones() -> None:
    gate = asyncio.Event()
    actor = Batcher("b", gate)
    actor.start()
    first = asyncio.ensure_future(actor.ask("first"))
    await asyncio.sleep(0)
    asks = [asyncio.ensure_future(actor.ask(m)) for m in [1, -1, "later"]]
    await asyncio.sleep(0)
    gate.set()
    replies = await asyncio.gather(first, *asks, return_exceptions=True)
    assert replies[0] == "one:first"
    assert all(isinstance(r, ValueError) for r in replies[1:3])
    assert isinstance(replies[3], ActorStopped)  # taken out while gathering the batch
    await actor.wait(2)
    assert not actor.running


async def test_idle_while_running_with_nothing_queued() -> None:
    gate = asyncio.Event()
    actor = Recorder("idle", gate=gate)
    assert not actor.idle  # not started
    actor.start()
    await asyncio.sleep(0)
    assert actor.idle
    actor.send("a")
    assert not actor.idle  # queued
    await asyncio.sleep(0)
    assert not actor.idle  # taken from the mailbox, still being handled (waits on the gate)
    gate.set()
    await eventually(lambda: actor.seen == ["a"], timeout=5, what="the message handled")
    await asyncio.sleep(0)
    assert actor.idle
    actor.request_stop()
    assert not actor.idle
    await actor.stop()
