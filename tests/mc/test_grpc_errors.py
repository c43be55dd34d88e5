"""The MC's gRPC edge maps errors in one place: a domain error keeps its status, anything
unexpected answers INTERNAL with a fixed message (never the exception's text), is logged with
its traceback and counted in `mc_grpc_internal_errors_total{method}`. Over real gRPC, real Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import grpc
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from darktower.actors import ActorStopped
from darktower.fencing import FencedOut, Lease, RedisFencedStore, StoreUnavailable
from darktower.mc.errors import InvalidMcRequest, StateUnavailable
from darktower.mc.grpc_service import INTERNAL_MESSAGE, status_for
from darktower.mc.server import McApp
from darktower.mc.settings import McSettings
from darktower.wire.dark_tower import internal_pb2 as pb
from tests.support.mc import RunningMc, assign_request

StartMc = Callable[..., Awaitable[RunningMc]]

# Looks like something that must never reach a caller.
LEAKY_TEXT = "redis://:hunter2@10.0.0.7:6379 at 0xdeadbeef"


class BrokenStore(RedisFencedStore):
    """The real Redis store, whose next `acquire` or `fenced_set` raises `failure` instead of
    running (a bug when it is not a `FencingError`)."""

    def __init__(self, client: aioredis.Redis) -> None:
        super().__init__(client)
        self.failure: BaseException | None = None

    def _maybe_fail(self) -> None:
        failure, self.failure = self.failure, None
        if failure is not None:
            raise failure

    async def acquire(
        self, meeting_id: str, owner: str, *, min_generation: int = 0, mh: str | None = None
    ) -> Lease:
        self._maybe_fail()
        return await super().acquire(meeting_id, owner, min_generation=min_generation, mh=mh)

    async def fenced_set(self, *args: object, **kwargs: object) -> None:
        self._maybe_fail()
        await super().fenced_set(*args, **kwargs)


def internal_errors(method: str = "AssignMeetingWithMh") -> float:
    return REGISTRY.get_sample_value("mc_grpc_internal_errors_total", {"method": method}) or 0.0


@pytest.fixture
async def broken(
    start_mc: StartMc, mc_settings: Callable[..., McSettings], redis_client: aioredis.Redis
) -> tuple[RunningMc, BrokenStore]:
    store = BrokenStore(redis_client)
    return await start_mc(McApp(mc_settings(), store=store)), store


def internal_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "darktower.mc.grpc_service" and r.levelno == logging.ERROR
    ]


async def test_an_unexpected_exception_while_admitting_is_internal_with_a_fixed_message(
    broken: tuple[RunningMc, BrokenStore],
    redis_client: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mc, store = broken
    before = internal_errors()
    store.failure = KeyError(LEAKY_TEXT)
    with (
        caplog.at_level(logging.ERROR, logger="darktower.mc.grpc_service"),
        pytest.raises(grpc.aio.AioRpcError) as raised,
    ):
        await mc.assign("buggy")
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert raised.value.details() == INTERNAL_MESSAGE
    assert "hunter2" not in str(raised.value.debug_error_string())
    assert internal_errors() == before + 1
    [record] = internal_records(caplog)
    assert record.getMessage() == "AssignMeetingWithMh failed: KeyError"
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    assert "Traceback" in caplog.text and "in acquire" in caplog.text
    # The admission was undone as for a Redis failure: no actor, no owner, no reservation.
    assert mc.app.controller.meetings == {}
    assert await redis_client.get("meeting:{buggy}:owner") is None
    answer = await mc.assign("buggy")
    assert answer.accepted
    assert internal_errors() == before + 1


async def test_an_unexpected_exception_reassigning_a_hosted_meeting_is_internal(
    broken: tuple[RunningMc, BrokenStore], caplog: pytest.LogCaptureFixture
) -> None:
    mc, store = broken
    assert (await mc.assign("hosted")).accepted
    before = internal_errors()
    store.failure = ValueError(LEAKY_TEXT)
    with (
        caplog.at_level(logging.ERROR, logger="darktower.mc.grpc_service"),
        pytest.raises(grpc.aio.AioRpcError) as raised,
    ):
        await mc.assign("hosted", mhs=2)
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert raised.value.details() == INTERNAL_MESSAGE
    assert internal_errors() == before + 1
    [record] = internal_records(caplog)
    assert record.exc_info is not None and record.exc_info[0] is ValueError


async def test_a_redis_failure_stays_an_unhealthy_refusal_not_an_error(
    broken: tuple[RunningMc, BrokenStore], caplog: pytest.LogCaptureFixture
) -> None:
    mc, store = broken
    before = internal_errors()
    store.failure = StoreUnavailable("redis unavailable: ConnectionError")
    with caplog.at_level(logging.ERROR, logger="darktower.mc.grpc_service"):
        answer = await mc.assign("flaky")
    assert not answer.accepted
    assert answer.rejection_reason == pb.REJECTION_REASON_UNHEALTHY
    assert internal_errors() == before
    assert internal_records(caplog) == []


async def test_an_invalid_request_still_names_the_field(
    mc: RunningMc, caplog: pytest.LogCaptureFixture
) -> None:
    before = internal_errors()
    request = assign_request("no spaces allowed")
    with (
        caplog.at_level(logging.ERROR, logger="darktower.mc.grpc_service"),
        pytest.raises(grpc.aio.AioRpcError) as raised,
    ):
        await mc.stub.AssignMeetingWithMh(request, metadata=mc.metadata, timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith("meeting_id: ")
    assert internal_errors() == before
    assert internal_records(caplog) == []


@pytest.mark.parametrize(
    ("error", "code", "message", "outcome"),
    [
        (InvalidMcRequest("meeting_id", "too long"), grpc.StatusCode.INVALID_ARGUMENT,
         "meeting_id: too long", "invalid"),
        (KeyError(LEAKY_TEXT), grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, "error"),
        (RuntimeError(LEAKY_TEXT), grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, "error"),
        # AssignMeetingWithMh answers it as UNHEALTHY; the meeting API's commands let it out as
        # UNAVAILABLE with the caller-written message (never a URL: see mc/errors.py).
        (StateUnavailable("meeting state unavailable"), grpc.StatusCode.UNAVAILABLE,
         "meeting state unavailable", "invalid"),
        (ActorStopped("x"), grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, "error"),
        (FencedOut("m", None, None), grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, "error"),
    ],
)  # fmt: skip
def test_status_for(error: Exception, code: grpc.StatusCode, message: str, outcome: str) -> None:
    assert status_for(error) == (code, message, outcome)
