"""The actor runtime.

An `Actor` owns a mailbox (an unbounded `asyncio.Queue` of envelopes) and one task that takes
messages one at a time and hands them to `handle`. Because one task handles the messages, the
actor's state needs no locks: that is what makes admission exact under concurrent calls.

Contracts:

* `send(msg)` queues and returns; `ask(msg)` queues and waits for `handle`'s return value (or
  its exception). Both raise `ActorStopped` once the actor is stopping.
* A parent starts children with `spawn`. Stopping or cancelling the parent stops its children
  first. When a child ends, the parent's `child_exited(child, exc)` runs: `exc` is None for a
  normal stop, the exception for a crash. A crash is logged and counted in
  `mc_actor_panic_total{actor_type}`; the parent keeps running (supervision).
* An exception escaping `handle` crashes the actor (let it crash): the message's `ask` caller
  gets the exception, later queued callers get `ActorStopped`.
* `request_stop()` lets an actor end itself after the messages already queued; `stop(timeout)`
  does the same from outside and cancels it if the deadline passes.
* Batches: consecutive queued messages of the types in `batch_types` (at most `max_batch`) are
  taken together and given to `handle_batch`, which answers one result per message (each
  `ask` gets its own); an exception escaping it crashes the actor as above, every message of
  the batch getting it. A lone message of such a type goes to `handle` as any other. The order
  of the mailbox holds: a batch ends at the first message of another type.
* Mailbox depth is exported per actor type (`mc_actor_mailbox_depth`, deepest live mailbox),
  with the type's warning / critical thresholds, and crossing one is logged and counted.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from darktower.actors.metrics import (
    ACTOR_PANICS,
    ACTORS_ALIVE,
    MAILBOX_DEPTH,
    MAILBOX_OVER_THRESHOLD,
    MAILBOX_THRESHOLD,
)

__all__ = ["Actor", "ActorStopped"]

log = logging.getLogger(__name__)

M = TypeVar("M")

_live: dict[str, weakref.WeakSet[Actor[Any]]] = {}
_sequence = itertools.count(1)


class ActorStopped(RuntimeError):
    """The actor is stopping or stopped and takes no more messages."""


@dataclass(slots=True)
class _Envelope(Generic[M]):
    message: M
    reply: asyncio.Future[Any] | None = None


@dataclass(slots=True)
class _Stop:
    """Sentinel queued by `request_stop`: the loop ends after the messages before it."""

    marker: int = field(default_factory=lambda: next(_sequence))


def _register_type(actor: Actor[Any]) -> None:
    kind = actor.actor_type
    if kind not in _live:
        live: weakref.WeakSet[Actor[Any]] = weakref.WeakSet()
        _live[kind] = live
        MAILBOX_DEPTH.labels(kind).set_function(
            lambda: float(max((a.mailbox_depth for a in list(live)), default=0))
        )
        MAILBOX_THRESHOLD.labels(kind, "warning").set(actor.mailbox_warning)
        MAILBOX_THRESHOLD.labels(kind, "critical").set(actor.mailbox_critical)
    _live[kind].add(actor)


class Actor(Generic[M]):
    """Base class: override `handle`, and optionally `on_start`, `on_stop`, `child_exited`."""

    actor_type: ClassVar[str] = "actor"
    mailbox_warning: ClassVar[int] = 100
    mailbox_critical: ClassVar[int] = 500
    child_stop_timeout: ClassVar[float] = 5.0
    # Message types that `handle_batch` takes together when several are queued in a row.
    batch_types: ClassVar[tuple[type, ...]] = ()
    max_batch: ClassVar[int] = 64

    def __init__(self, name: str) -> None:
        self.name = name
        self._mailbox: asyncio.Queue[_Envelope[M] | _Stop] = asyncio.Queue()
        # Taken from the mailbox while gathering a batch but not part of it: handled next.
        self._next: _Envelope[M] | _Stop | None = None
        self._task: asyncio.Task[None] | None = None
        self._parent: Actor[Any] | None = None
        self._children: set[Actor[Any]] = set()
        self._accepting = True
        self._band = 0  # 0 normal, 1 warning, 2 critical: log a crossing once
        self._waiting = False  # the task waits on the mailbox (see `idle`)
        # Set once the task ended AND the parent was told: waiting on the task alone could
        # return before its done-callbacks (supervision) have run.
        self._exited = asyncio.Event()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.actor_type}:{self.name}>"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the actor's task on the running loop (a top-level actor; children use spawn)."""
        if self._task is not None:
            raise RuntimeError(f"{self!r} already started")
        _register_type(self)
        ACTORS_ALIVE.labels(self.actor_type).inc()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"{self.actor_type}:{self.name}"
        )
        self._task.add_done_callback(self._on_task_done)

    def spawn(self, child: Actor[Any]) -> Actor[Any]:
        """Start `child` under this actor's supervision."""
        if not self._accepting:
            raise ActorStopped(f"{self!r} is stopping")
        child._parent = self
        self._children.add(child)
        child.start()
        return child

    @property
    def children(self) -> frozenset[Actor[Any]]:
        return frozenset(self._children)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def mailbox_depth(self) -> int:
        return self._mailbox.qsize() + (self._next is not None)

    @property
    def idle(self) -> bool:
        """Running, taking messages, none queued and none being handled (nor `on_start`):
        the actor waits for its next message, so a decision made now by a synchronous call
        on its state is the one its mailbox would have made next."""
        return self._waiting and self._accepting and self.mailbox_depth == 0

    def request_stop(self) -> None:
        """End after the messages already queued; new messages are refused from now on."""
        if self._accepting:
            self._accepting = False
            self._mailbox.put_nowait(_Stop())

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop gracefully within `timeout` seconds, then cancel. Children stop first."""
        self.request_stop()
        await self.wait(timeout)

    async def wait(self, timeout: float | None = None) -> None:
        """Wait for the actor to end; cancel it if it is still running after `timeout`."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._exited.wait()), timeout)
        except TimeoutError:
            self._task.cancel()
            await self._exited.wait()

    # -- messages --------------------------------------------------------------------------

    def send(self, message: M) -> None:
        """Queue a message; raises ActorStopped when the actor no longer takes messages."""
        self._put(_Envelope(message))

    async def ask(self, message: M) -> Any:
        """Queue a message and wait for what `handle` returns for it (or raises)."""
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._put(_Envelope(message, reply))
        return await reply

    def _put(self, envelope: _Envelope[M]) -> None:
        if not self._accepting or self._task is None or self._task.done():
            raise ActorStopped(f"{self!r} takes no more messages")
        self._mailbox.put_nowait(envelope)
        self._watch_depth()

    def _watch_depth(self) -> None:
        depth = self.mailbox_depth
        band = 2 if depth > self.mailbox_critical else 1 if depth > self.mailbox_warning else 0
        if band > self._band:
            level = "critical" if band == 2 else "warning"
            MAILBOX_OVER_THRESHOLD.labels(self.actor_type, level).inc()
            log.warning("%r mailbox depth %d is over the %s threshold", self, depth, level)
        self._band = band

    # -- overridables ----------------------------------------------------------------------

    async def handle(self, message: M) -> Any:
        raise NotImplementedError

    async def handle_batch(self, messages: Sequence[M]) -> Sequence[Any]:
        """Handle two or more consecutive messages of `batch_types` in one step: one result
        per message, in their order. By default each goes to `handle` in turn."""
        return [await self.handle(message) for message in messages]

    async def on_start(self) -> None:
        """Runs in the actor's task before the first message."""

    async def on_stop(self) -> None:
        """Runs in the actor's task after its children ended, whatever the reason."""

    def child_exited(self, child: Actor[Any], exc: BaseException | None) -> None:
        """A child ended (`exc` None: normally). Runs on the loop; keep it synchronous."""

    # -- internals -------------------------------------------------------------------------

    async def _run(self) -> None:
        graceful = False
        try:
            await self.on_start()
            while True:
                envelope, self._next = self._next, None
                if envelope is None:
                    self._waiting = True
                    try:
                        envelope = await self._mailbox.get()
                    finally:
                        self._waiting = False
                if isinstance(envelope, _Stop):
                    graceful = True
                    return
                batch = self._gather(envelope)
                try:
                    if len(batch) == 1:
                        results: Sequence[Any] = [await self.handle(envelope.message)]
                    else:
                        results = await self.handle_batch([e.message for e in batch])
                except BaseException as exc:
                    for each in batch:
                        if each.reply is not None and not each.reply.done():
                            each.reply.set_exception(
                                exc if isinstance(exc, Exception) else ActorStopped(repr(self))
                            )
                    raise
                for each, result in zip(batch, results, strict=True):
                    if each.reply is not None and not each.reply.done():
                        each.reply.set_result(result)
        finally:
            self._accepting = False
            await self._stop_children(graceful)
            self._fail_pending()
            try:
                await self.on_stop()
            except Exception:
                log.exception("%r failed in on_stop", self)

    def _gather(self, first: _Envelope[M]) -> list[_Envelope[M]]:
        """`first` with the messages of `batch_types` queued right after it (see `max_batch`)."""
        batch = [first]
        kinds = self.batch_types
        if not kinds or not isinstance(first.message, kinds):
            return batch
        while len(batch) < self.max_batch and not self._mailbox.empty():
            envelope = self._mailbox.get_nowait()
            if isinstance(envelope, _Stop) or not isinstance(envelope.message, kinds):
                self._next = envelope
                break
            batch.append(envelope)
        return batch

    async def _stop_children(self, graceful: bool) -> None:
        """A graceful stop lets children finish their queued messages (bounded by
        `child_stop_timeout`); a crash or a cancellation cancels them at once."""
        children = list(self._children)
        if not children:
            return
        for child in children:
            if graceful:
                child.request_stop()
            elif child._task is not None:
                child._task.cancel()
        timeout = self.child_stop_timeout if graceful else None
        await asyncio.gather(*(c.wait(timeout) for c in children), return_exceptions=True)

    def _fail_pending(self) -> None:
        waiting, self._next = self._next, None
        while waiting is not None or not self._mailbox.empty():
            envelope = waiting if waiting is not None else self._mailbox.get_nowait()
            waiting = None
            if isinstance(envelope, _Envelope) and envelope.reply and not envelope.reply.done():
                envelope.reply.set_exception(ActorStopped(f"{self!r} stopped"))

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        ACTORS_ALIVE.labels(self.actor_type).dec()
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            ACTOR_PANICS.labels(self.actor_type).inc()
            log.error("%r crashed", self, exc_info=(type(exc), exc, exc.__traceback__))
        parent = self._parent
        if parent is not None:
            parent._children.discard(self)
            try:
                parent.child_exited(self, exc)
            except Exception:
                log.exception("%r failed handling the exit of %r", parent, self)
        self._exited.set()
