"""A real GlobalControllerService on loopback that records what MCs send it, for tests.

It serves grpc.aio behind the real `ServiceAuthInterceptor`, trusting only the MC public key
(scope `service.write.gc`, caller `meeting-controller`), so every recorded call carried a valid
MC token; the verified claims are recorded with the request.

Each RPC answers normally by default (RegisterMC: accepted, with the configured intervals).
A test changes that per RPC:

* `gc.next(RPC, outcome, ...)` — the next calls of RPC get these outcomes, one each, in order;
* `gc.always(RPC, outcome)` — every later call (once `next` is used up) gets it, until
  `gc.always(RPC, None)` restores the normal answer.

Outcomes: `ANSWER` (normal; `Answer(delay)`: a slow GC), `Refuse(message)` (RegisterMC only:
accepted=false), `Fail(code)` (abort with that status, e.g. NOT_FOUND on a heartbeat,
UNAVAILABLE anywhere).

`stop()` makes the GC vanish (the port is closed); `start(port)` brings it back on the same
port. What was recorded survives both.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import grpc
from google.protobuf.message import Message

from darktower.auth.interceptor import (
    GRPC_SERVER_OPTIONS,
    ServiceAuthInterceptor,
    current_claims,
)
from darktower.auth.keys import load_public_keys
from darktower.auth.tokens import SCOPE_GC, ServiceClaims, ServiceType, TokenVerifier
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

__all__ = [
    "ANSWER",
    "COMPREHENSIVE",
    "ENDED",
    "FAST",
    "REGISTER",
    "Answer",
    "Fail",
    "Outcome",
    "Received",
    "RecordingGc",
    "Refuse",
]

Rpc = Literal["RegisterMC", "FastHeartbeat", "ComprehensiveHeartbeat", "NotifyMeetingEnded"]
REGISTER: Final = "RegisterMC"
FAST: Final = "FastHeartbeat"
COMPREHENSIVE: Final = "ComprehensiveHeartbeat"
ENDED: Final = "NotifyMeetingEnded"


@dataclass(frozen=True)
class Answer:
    """Answer as a healthy GC would (after `delay` seconds: a slow GC)."""

    delay: float = 0.0


@dataclass(frozen=True)
class Refuse:
    """RegisterMC answered accepted=false with `message`."""

    message: str = "refused by the test"


@dataclass(frozen=True)
class Fail:
    """The call fails with status `code`."""

    code: grpc.StatusCode
    message: str = "failed by the test"


Outcome = Answer | Refuse | Fail
ANSWER: Final = Answer()


@dataclass(frozen=True)
class Received:
    """One call that reached the servicer (so the interceptor admitted its token)."""

    at: float  # time.monotonic() on arrival
    rpc: Rpc
    request: Any  # the protobuf request of `rpc`
    claims: ServiceClaims | None
    outcome: Outcome

    @property
    def answered(self) -> bool:
        """Whether the call succeeded (a refused registration counts: it was answered)."""
        return not isinstance(self.outcome, Fail)


@dataclass
class RecordingGc:
    key_dir: Path
    fast_ms: int = 100
    comprehensive_ms: int = 300
    received: list[Received] = field(default_factory=list)
    # Called with each Received before it is answered (e.g. to sample the MC's metrics then).
    observers: list[Callable[[Received], None]] = field(default_factory=list)
    port: int = 0
    _next: dict[str, deque[Outcome]] = field(default_factory=dict)
    _always: dict[str, Outcome] = field(default_factory=dict)
    _server: grpc.aio.Server | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> int:
        """Serve on 127.0.0.1:`port` (0: a free one, then kept for restarts); the port."""
        if self._server is not None:
            raise RuntimeError("already serving")
        verifier = TokenVerifier(
            load_public_keys([self.key_dir / "mc.pub"]),
            required_scope=SCOPE_GC,
            allowed_callers={ServiceType.MEETING_CONTROLLER},
            allow_unbound_keys=True,  # the legacy trio's mc.key, by opt-in
        )
        server = grpc.aio.server(
            interceptors=[ServiceAuthInterceptor(verifier, service="gc")],
            options=GRPC_SERVER_OPTIONS,
        )
        pb_grpc.add_GlobalControllerServiceServicer_to_server(_Servicer(self), server)
        bound = server.add_insecure_port(f"127.0.0.1:{port or self.port}")
        if bound == 0:
            raise RuntimeError(f"cannot bind 127.0.0.1:{port or self.port}")
        await server.start()
        self._server, self.port = server, bound
        return bound

    async def stop(self) -> None:
        """Vanish: refuse connections until `start()` again."""
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop(grace=0)

    # -- scripting -------------------------------------------------------------------------

    def next(self, rpc: Rpc, *outcomes: Outcome) -> None:
        self._next.setdefault(rpc, deque()).extend(outcomes)

    def always(self, rpc: Rpc, outcome: Outcome | None) -> None:
        if outcome is None:
            self._always.pop(rpc, None)
        else:
            self._always[rpc] = outcome

    def _outcome(self, rpc: Rpc) -> Outcome:
        queued = self._next.get(rpc)
        if queued:
            return queued.popleft()
        return self._always.get(rpc, ANSWER)

    # -- what was received -----------------------------------------------------------------

    def calls(self, rpc: Rpc, *, since: float = 0.0) -> list[Received]:
        return [r for r in self.received if r.rpc == rpc and r.at >= since]

    @property
    def registrations(self) -> list[pb.RegisterMCRequest]:
        """Registrations the GC accepted."""
        return [r.request for r in self.calls(REGISTER) if r.outcome == ANSWER]

    @property
    def fast_beats(self) -> list[pb.FastHeartbeatRequest]:
        return [r.request for r in self.calls(FAST)]

    @property
    def comprehensive_beats(self) -> list[pb.ComprehensiveHeartbeatRequest]:
        return [r.request for r in self.calls(COMPREHENSIVE)]

    @property
    def ended_meetings(self) -> list[pb.NotifyMeetingEndedRequest]:
        """Meeting-end notices the GC acknowledged."""
        return [r.request for r in self.calls(ENDED) if r.answered]

    async def wait_for(
        self, predicate: Callable[[], object], *, timeout: float, what: str = "condition"
    ) -> None:
        """Wait until `predicate()` is truthy (checked on each call received); AssertionError
        naming `what` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"not {what} within {timeout}s; received: {self.summary()}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.05))

    def summary(self) -> str:
        """The calls received so far, compactly, for assertion messages."""
        start = self.received[0].at if self.received else 0.0
        return ", ".join(
            f"{r.rpc}@{r.at - start:.2f}s:{type(r.outcome).__name__}" for r in self.received
        )

    # -- answering (called by the servicer) --------------------------------------------------

    async def _handle(
        self, rpc: Rpc, request: Message, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Outcome:
        received = Received(
            at=time.monotonic(),
            rpc=rpc,
            request=request,
            claims=current_claims.get(),
            outcome=self._outcome(rpc),
        )
        self.received.append(received)
        for observe in self.observers:
            observe(received)
        self._changed.set()
        if isinstance(received.outcome, Fail):
            await context.abort(received.outcome.code, received.outcome.message)
        if isinstance(received.outcome, Answer) and received.outcome.delay:
            await asyncio.sleep(received.outcome.delay)
        return received.outcome


class _Servicer(pb_grpc.GlobalControllerServiceServicer):
    def __init__(self, gc: RecordingGc) -> None:
        self._gc = gc

    async def RegisterMC(
        self, request: pb.RegisterMCRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RegisterMCResponse:
        outcome = await self._gc._handle(REGISTER, request, context)
        if isinstance(outcome, Refuse):
            return pb.RegisterMCResponse(accepted=False, message=outcome.message)
        return pb.RegisterMCResponse(
            accepted=True,
            message="registered",
            fast_heartbeat_interval_ms=self._gc.fast_ms,
            comprehensive_heartbeat_interval_ms=self._gc.comprehensive_ms,
        )

    async def FastHeartbeat(
        self, request: pb.FastHeartbeatRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.HeartbeatResponse:
        await self._gc._handle(FAST, request, context)
        return pb.HeartbeatResponse(acknowledged=True, timestamp=int(time.time()))

    async def ComprehensiveHeartbeat(
        self,
        request: pb.ComprehensiveHeartbeatRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.HeartbeatResponse:
        await self._gc._handle(COMPREHENSIVE, request, context)
        return pb.HeartbeatResponse(acknowledged=True, timestamp=int(time.time()))

    async def NotifyMeetingEnded(
        self, request: pb.NotifyMeetingEndedRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.NotifyMeetingEndedResponse:
        await self._gc._handle(ENDED, request, context)
        return pb.NotifyMeetingEndedResponse(acknowledged=True)

    async def MigrateMeeting(
        self, request: pb.MigrateMeetingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.MigrateMeetingResponse:
        # Live migration is tested against a real GC (tests/mc/test_migration.py): none here.
        return pb.MigrateMeetingResponse(placed=False, reason="recording_gc")
