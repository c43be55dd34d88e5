"""Trace propagation over real sockets on loopback: HTTP requests served by an `HttpServer`,
gRPC calls through `channel_for` to a `service_grpc_server` (darktower.runtime.tracing*).

Spans go to the session's in-memory exporter (`tests.support.tracing.memory_spans`). Attacks:
malformed, zero, oversized and duplicated `traceparent` values (and an oversized
`tracestate`) in HTTP headers and in gRPC metadata are ignored — the request is answered and
starts a fresh trace, nothing is logged about it; a call the auth interceptor refuses makes no
span; the query string (where a careless client puts a token) is never recorded.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from darktower.auth.grpc_server import service_grpc_server
from darktower.runtime.grpc_channels import channel_for
from darktower.runtime.serving import HttpServer
from darktower.runtime.supervisor import TaskSupervisor
from darktower.runtime.tracing import MAX_HEADER_CHARS, child_span, current_ids, extract
from darktower.runtime.tracing_http import MAX_PATH_CHARS
from tests.support.tracing import memory_spans

pytestmark = pytest.mark.timeout(30)

METHOD = "/test.Echo/Call"
SECRET = "s3cret-in-an-exception"
ABORTING = "/test.Echo/Refuse"


def fresh_traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


# Values a client may send that must not become a parent (each with a valid-looking tail).
BAD_TRACEPARENTS = {
    "malformed": "00-xyz-abc-01",
    "zero trace id": f"00-{'0' * 32}-{'1' * 16}-01",
    "zero span id": f"00-{'1' * 32}-{'0' * 16}-01",
    "version ff": f"ff-{'1' * 32}-{'2' * 16}-01",
    "upper case": f"00-{'A' * 32}-{'B' * 16}-01",
    "trailing data on version 00": f"00-{'1' * 32}-{'2' * 16}-01-extra",
    # A later version may carry more fields; past the length cap it is still refused, unread.
    "oversized": f"01-{'1' * 32}-{'2' * 16}-01-" + "z" * MAX_HEADER_CHARS,
    "huge": "00-" + "a" * 7000,
    "empty": "",
}


def ids(span: ReadableSpan) -> tuple[str, str, str | None]:
    context = span.get_span_context()
    assert context is not None
    parent = span.parent
    return (
        trace.format_trace_id(context.trace_id),
        trace.format_span_id(context.span_id),
        trace.format_span_id(parent.span_id) if parent is not None else None,
    )


@pytest.fixture
def exported() -> InMemorySpanExporter:
    return memory_spans()


# -- the carrier ----------------------------------------------------------------------------


def test_extract_continues_a_valid_traceparent() -> None:
    header, trace_id, span_id = fresh_traceparent()
    context = trace.get_current_span(extract([(b"traceparent", header.encode())]))
    span_context = context.get_span_context()
    assert span_context.is_remote
    assert trace.format_trace_id(span_context.trace_id) == trace_id
    assert trace.format_span_id(span_context.span_id) == span_id


@pytest.mark.parametrize("bad", BAD_TRACEPARENTS.values(), ids=BAD_TRACEPARENTS.keys())
def test_extract_ignores_a_bad_traceparent_silently(
    bad: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    context = extract([("traceparent", bad), ("tracestate", "a=" + "b" * 2000)])
    assert not trace.get_current_span(context).get_span_context().is_valid
    assert caplog.records == []  # a client cannot write to our logs through a header


def test_the_first_traceparent_counts_and_a_huge_tracestate_drops_the_parent() -> None:
    first, trace_id, _ = fresh_traceparent()
    second, _, _ = fresh_traceparent()
    context = extract([("traceparent", first), ("traceparent", second)])
    found = trace.get_current_span(context).get_span_context()
    assert trace.format_trace_id(found.trace_id) == trace_id
    huge_state = extract([("traceparent", first), ("tracestate", "a=" + "b" * 600)])
    assert not trace.get_current_span(huge_state).get_span_context().is_valid


def test_child_span_only_inside_a_span(exported: InMemorySpanExporter) -> None:
    with child_span("orphan") as orphan:
        assert orphan is None and current_ids() is None
    with trace.get_tracer("test").start_as_current_span("parent"), child_span("c") as child:
        assert child is not None
    names = {s.name: s for s in exported.get_finished_spans()}
    assert set(names) == {"parent", "c"}
    assert ids(names["c"])[2] == ids(names["parent"])[1]


# -- gRPC -----------------------------------------------------------------------------------


class Echo:
    """A generic unary service: `Call` answers b"ok" and records what it saw; `Refuse` aborts."""

    def __init__(self) -> None:
        self.seen: list[tuple[tuple[str, str] | None, dict[str, Any]]] = []

    async def call(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        metadata = {k: v for k, v in context.invocation_metadata() or ()}
        self.seen.append((current_ids(), metadata))
        return b"ok"

    async def refuse(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no")
        raise AssertionError("abort returned")

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        return grpc.method_handlers_generic_handler(
            "test.Echo",
            {
                "Call": grpc.unary_unary_rpc_method_handler(self.call),
                "Refuse": grpc.unary_unary_rpc_method_handler(self.refuse),
            },
        )


class RefuseAll(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Stands for the auth interceptor refusing a caller."""

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "no")

        return grpc.unary_unary_rpc_method_handler(refuse)


async def _serve(echo: Echo, interceptors: list[Any]) -> tuple[grpc.aio.Server, str]:
    server = service_grpc_server(interceptors=interceptors)
    server.add_generic_rpc_handlers((echo.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"http://127.0.0.1:{port}"


@pytest.fixture
async def echo() -> AsyncIterator[tuple[Echo, str]]:
    service = Echo()
    server, endpoint = await _serve(service, [])
    try:
        yield service, endpoint
    finally:
        await server.stop(None)


async def test_a_call_inside_a_span_continues_the_trace_on_the_server(
    echo: tuple[Echo, str], exported: InMemorySpanExporter
) -> None:
    service, endpoint = echo
    channel = channel_for(endpoint)
    forged, forged_trace_id, _ = fresh_traceparent()
    try:
        with trace.get_tracer("test").start_as_current_span("request"):
            # A traceparent the caller set itself is replaced; other metadata goes through.
            answer = await channel.unary_unary(METHOD, None, None)(
                b"hi", timeout=10, metadata=(("traceparent", forged), ("x-other", "1"))
            )
    finally:
        await channel.close(None)
    assert answer == b"ok"
    spans = {(s.name, s.kind): s for s in exported.get_finished_spans()}
    client = spans[("test.Echo/Call", SpanKind.CLIENT)]
    server = spans[("test.Echo/Call", SpanKind.SERVER)]
    request = spans[("request", SpanKind.INTERNAL)]
    assert ids(client)[2] == ids(request)[1]
    assert ids(server)[0] == ids(request)[0] and ids(server)[2] == ids(client)[1]
    assert server.attributes is not None
    assert dict(server.attributes) == {
        "rpc.system": "grpc",
        "rpc.service": "test.Echo",
        "rpc.method": "Call",
        "rpc.grpc.status_code": 0,
    }
    [(seen_ids, metadata)] = service.seen
    assert seen_ids == ids(server)[:2]
    assert metadata["traceparent"].split("-")[1:3] == list(ids(client)[:2])
    assert metadata["x-other"] == "1" and forged_trace_id not in str(metadata)


async def test_a_call_outside_any_span_carries_nothing_and_makes_no_span(
    echo: tuple[Echo, str], exported: InMemorySpanExporter
) -> None:
    service, endpoint = echo
    channel = channel_for(endpoint)
    try:
        assert await channel.unary_unary(METHOD, None, None)(b"hi", timeout=10) == b"ok"
    finally:
        await channel.close(None)
    [(seen_ids, metadata)] = service.seen
    assert seen_ids is None and "traceparent" not in metadata
    assert exported.get_finished_spans() == ()


async def test_bad_traceparent_metadata_starts_a_fresh_trace(
    echo: tuple[Echo, str], exported: InMemorySpanExporter
) -> None:
    _, endpoint = echo
    # A plain channel: the caller writes the metadata itself, as an attacker would.
    async with grpc.aio.insecure_channel(endpoint.removeprefix("http://")) as channel:
        call = channel.unary_unary(METHOD, None, None)
        for case, bad in BAD_TRACEPARENTS.items():
            metadata = (("traceparent", bad), ("tracestate", "x=" + "y" * 600))
            assert await call(b"hi", metadata=metadata, timeout=10) == b"ok", case
    servers = [s for s in exported.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert len(servers) == len(BAD_TRACEPARENTS)
    for span in servers:
        trace_id, _, parent = ids(span)
        assert parent is None and trace_id not in ("0" * 32, "1" * 32, "a" * 32)
    assert len({ids(s)[0] for s in servers}) == len(servers)  # each a trace of its own


async def test_a_failed_call_is_an_error_span_on_both_sides(
    echo: tuple[Echo, str], exported: InMemorySpanExporter
) -> None:
    _, endpoint = echo
    channel = channel_for(endpoint)
    try:
        with (
            trace.get_tracer("test").start_as_current_span("request"),
            pytest.raises(grpc.aio.AioRpcError) as refused,
        ):
            await channel.unary_unary(ABORTING, None, None)(b"hi", timeout=10)
    finally:
        await channel.close(None)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    failed = [s for s in exported.get_finished_spans() if s.name == "test.Echo/Refuse"]
    assert {s.kind for s in failed} == {SpanKind.CLIENT, SpanKind.SERVER}
    for span in failed:
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "FAILED_PRECONDITION"
        assert span.events == ()
        assert span.attributes is not None
        assert (
            span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.FAILED_PRECONDITION.value[0]
        )


async def test_a_refused_caller_makes_no_server_span(exported: InMemorySpanExporter) -> None:
    server, endpoint = await _serve(Echo(), [RefuseAll()])
    try:
        header, _, _ = fresh_traceparent()
        async with grpc.aio.insecure_channel(endpoint.removeprefix("http://")) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await channel.unary_unary(METHOD, None, None)(
                    b"hi", metadata=(("traceparent", header),), timeout=10
                )
    finally:
        await server.stop(None)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert exported.get_finished_spans() == ()


# -- HTTP -----------------------------------------------------------------------------------


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, Any]:
        return {"item": item_id, "ids": current_ids()}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(f"cannot use {SECRET}")

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    return app


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    tasks = TaskSupervisor(["test-http"])
    server = HttpServer(_app(), "127.0.0.1:0", what="test HTTP", tasks=tasks, task_name="test-http")
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            yield client
    finally:
        await server.stop()
        await tasks.stop(2.0)


def _servers(exported: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exported.get_finished_spans() if s.kind is SpanKind.SERVER]


async def test_an_http_request_continues_the_clients_trace(
    http: httpx.AsyncClient, exported: InMemorySpanExporter
) -> None:
    header, trace_id, span_id = fresh_traceparent()
    response = await http.get(
        "/items/i-1?token=s3cret-in-query", headers={"traceparent": header, "baggage": "k=v"}
    )
    assert response.status_code == 200
    [span] = _servers(exported)  # one server span: FastAPI's own telemetry stays off
    assert span.name == "GET /items/{item_id}"
    assert ids(span)[0::2] == (trace_id, span_id)
    assert response.json()["ids"] == list(ids(span)[:2])
    assert span.attributes is not None
    assert dict(span.attributes) == {
        "http.request.method": "GET",
        "url.path": "/items/i-1",
        "url.scheme": "http",
        "http.route": "/items/{item_id}",
        "http.response.status_code": 200,
    }
    assert "s3cret" not in str(span.to_json())


async def test_bad_traceparent_headers_start_a_fresh_trace(
    http: httpx.AsyncClient, exported: InMemorySpanExporter
) -> None:
    for case, bad in BAD_TRACEPARENTS.items():
        response = await http.get(
            "/items/i-2", headers={"traceparent": bad, "tracestate": "x=" + "y" * 600}
        )
        assert response.status_code == 200, case
    servers = _servers(exported)
    assert len(servers) == len(BAD_TRACEPARENTS)
    assert all(ids(s)[2] is None for s in servers)
    assert len({ids(s)[0] for s in servers}) == len(servers)


async def test_a_failed_request_is_an_error_span_and_probes_are_not_traced(
    http: httpx.AsyncClient, exported: InMemorySpanExporter
) -> None:
    assert (await http.get("/boom")).status_code == 500
    assert (await http.get("/health/live")).status_code == 200
    assert (await http.get("/x" * 4000)).status_code == 404
    span, unrouted = _servers(exported)
    assert unrouted.name == "GET" and unrouted.attributes is not None
    assert unrouted.attributes["url.path"] == ("/x" * 4000)[:MAX_PATH_CHARS]
    assert span.name == "GET /boom"
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["http.response.status_code"] == 500
    # The exception's class only: its text (here a secret) is not in the span.
    assert span.attributes["error.type"] == "RuntimeError"
    assert span.events == () and SECRET not in span.to_json()
