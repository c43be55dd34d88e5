"""The one gRPC edge every service uses (`darktower.runtime.grpc_edge`), over a real gRPC server
on loopback: an answer passes, a mapped error keeps its status, anything unexpected answers
INTERNAL with the fixed message (never the exception's text), is logged and reported to the
internal-error hook; a status the method chose itself passes untouched; every call is reported
once to the result hook. Then each service's own `status_for` (MC, MH, GC) as a table."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import grpc.aio
import pytest

from darktower.embedded.redis import free_port
from darktower.gc.errors import CallerMismatch
from darktower.gc.grpc_edge import status_for as gc_status_for
from darktower.mc.errors import InvalidMcRequest, StateUnavailable
from darktower.mc.grpc_service import status_for as mc_status_for
from darktower.mh.errors import InvalidMhRequest, MediaUnavailable, MhAtCapacity
from darktower.mh.grpc_service import UNAVAILABLE_MESSAGE as MH_UNAVAILABLE
from darktower.mh.grpc_service import status_for as mh_status_for
from darktower.runtime.grpc_edge import INTERNAL_MESSAGE, Context, EdgeStatus, grpc_edge

LEAKY = "postgresql://gc:hunter2@db.internal/registry"
LOGGER = "test.grpc_edge"


class Refused(Exception):
    """A domain error the test's `status_for` maps to FAILED_PRECONDITION."""


def status_for(exc: Exception) -> EdgeStatus:
    if isinstance(exc, Refused):
        return EdgeStatus(grpc.StatusCode.FAILED_PRECONDITION, "refused", "refused")
    return EdgeStatus(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, "error")


@dataclass
class Hooks:
    internal: list[str] = field(default_factory=list)
    results: list[tuple[str, str]] = field(default_factory=list)
    refusals: list[tuple[str, str, str]] = field(default_factory=list)


def servicer(hooks: Hooks, *, custom_refusal: bool, traceback: bool) -> object:
    """A servicer whose four RPCs run through the edge, its hooks recording into `hooks`."""
    edge = grpc_edge(
        status_for,
        log=logging.getLogger(LOGGER),
        on_internal=hooks.internal.append,
        on_result=lambda rpc, outcome: hooks.results.append((rpc, outcome)),
        on_refusal=(
            (lambda rpc, exc, st: hooks.refusals.append((rpc, str(exc), st.outcome)))
            if custom_refusal
            else None
        ),
        log_traceback=traceback,
    )

    class Servicer:
        @edge
        async def Answer(self, request: bytes, context: Context) -> bytes:
            return b"echo:" + request

        @edge
        async def Refuse(self, request: bytes, context: Context) -> bytes:
            raise Refused("not now: " + LEAKY)

        @edge
        async def Explode(self, request: bytes, context: Context) -> bytes:
            raise KeyError(LEAKY)

        @edge
        async def Abort(self, request: bytes, context: Context) -> bytes:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, "chosen by the method")
            raise AssertionError("abort returned")

    return Servicer()


@dataclass
class Edge:
    channel: grpc.aio.Channel
    hooks: Hooks

    async def call(self, method: str) -> bytes:
        stub = self.channel.unary_unary(
            f"/test.Edge/{method}", request_serializer=None, response_deserializer=None
        )
        response: bytes = await stub(b"hi", timeout=10)
        return response

    async def fail(self, method: str) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await self.call(method)
        return caught.value


async def serve(*, custom_refusal: bool = False, traceback: bool = True) -> AsyncIterator[Edge]:
    hooks = Hooks()
    rpcs = servicer(hooks, custom_refusal=custom_refusal, traceback=traceback)
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(getattr(rpcs, name))
        for name in ("Answer", "Refuse", "Explode", "Abort")
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Edge", handlers),))
    port = server.add_insecure_port(f"127.0.0.1:{free_port()}")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Edge(channel, hooks)
    finally:
        await channel.close(None)
        await server.stop(None)


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    async for running in serve():
        yield running


async def test_an_answer_passes_and_is_reported_ok(edge: Edge) -> None:
    assert await edge.call("Answer") == b"echo:hi"
    assert edge.hooks.results == [("Answer", "ok")]
    assert edge.hooks.internal == []


async def test_a_mapped_error_keeps_its_status_and_is_logged_as_a_refusal(
    edge: Edge, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER):
        error = await edge.fail("Refuse")
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "refused"
    assert edge.hooks.results == [("Refuse", "refused")]
    assert edge.hooks.internal == []
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert record.levelno == logging.INFO
    assert record.getMessage().startswith("Refuse refused: not now")


async def test_anything_unexpected_is_internal_with_the_fixed_message(
    edge: Edge, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER):
        error = await edge.fail("Explode")
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == INTERNAL_MESSAGE
    assert LEAKY not in f"{error.details()} {error.debug_error_string()}"
    assert edge.hooks.internal == ["Explode"]
    assert edge.hooks.results == [("Explode", "error")]
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "Explode failed: KeyError"
    assert record.exc_info is not None and record.exc_info[1] is not None
    assert "in Explode" in caplog.text  # the traceback, in the log only


async def test_without_traceback_only_the_type_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async for edge in serve(traceback=False):
        with caplog.at_level(logging.INFO, logger=LOGGER):
            error = await edge.fail("Explode")
        assert error.code() == grpc.StatusCode.INTERNAL
        assert edge.hooks.internal == ["Explode"]
    assert "Explode failed: KeyError" in caplog.text
    assert LEAKY not in caplog.text and "Traceback" not in caplog.text


async def test_a_custom_refusal_hook_replaces_the_refusal_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async for edge in serve(custom_refusal=True):
        with caplog.at_level(logging.INFO, logger=LOGGER):
            error = await edge.fail("Refuse")
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert edge.hooks.refusals == [("Refuse", "not now: " + LEAKY, "refused")]
    assert not [r for r in caplog.records if r.name == LOGGER]


async def test_a_status_the_method_chose_passes_untouched(
    edge: Edge, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER):
        error = await edge.fail("Abort")
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error.details() == "chosen by the method"
    assert edge.hooks.internal == []
    assert edge.hooks.results == []
    assert not [r for r in caplog.records if r.name == LOGGER]


@pytest.mark.parametrize(
    ("status_for_", "error", "expected"),
    [
        (
            mc_status_for,
            InvalidMcRequest("meeting_id", "required"),
            (grpc.StatusCode.INVALID_ARGUMENT, "meeting_id: required"),
        ),
        (
            mc_status_for,
            StateUnavailable("meeting state store unavailable"),
            (grpc.StatusCode.UNAVAILABLE, "meeting state store unavailable"),
        ),
        (mc_status_for, KeyError(LEAKY), (grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)),
        (
            mh_status_for,
            InvalidMhRequest("meeting_id", "required"),
            (grpc.StatusCode.INVALID_ARGUMENT, "meeting_id: required"),
        ),
        (
            mh_status_for,
            MhAtCapacity("at capacity"),
            (grpc.StatusCode.RESOURCE_EXHAUSTED, "at capacity"),
        ),
        (
            mh_status_for,
            MediaUnavailable("janus said: " + LEAKY),
            (grpc.StatusCode.UNAVAILABLE, MH_UNAVAILABLE),
        ),
        (mh_status_for, RuntimeError(LEAKY), (grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)),
        (
            gc_status_for,
            CallerMismatch("RegisterMC"),
            (grpc.StatusCode.PERMISSION_DENIED, CallerMismatch.MESSAGE),
        ),
        (gc_status_for, ValueError(LEAKY), (grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)),
    ],
)
def test_each_services_status_for(
    status_for_: object, error: Exception, expected: tuple[grpc.StatusCode, str]
) -> None:
    assert callable(status_for_)
    status = status_for_(error)
    assert isinstance(status, EdgeStatus)
    assert (status.code, status.message) == expected
    assert LEAKY not in status.message
