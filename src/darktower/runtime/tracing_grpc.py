"""Traces over gRPC: a client interceptor that carries the current trace in the call's
metadata, and a server interceptor that continues it.

* `ClientTracing` (on every channel of `channel_for`): a unary call made while a span is current
  gets a CLIENT span, and that span's `traceparent` (and `tracestate`) goes out as metadata. A
  call made outside any span (heartbeats, registration) is left alone: no span, no metadata.
* `ServerTracing` (on every service's server, after the auth interceptor, so an unauthenticated
  caller makes no span): a unary call whose metadata has a `traceparent` key runs in a SERVER
  span continuing that trace — or, when the value is malformed or too long, starting a fresh
  one. Calls without it (the MCs' heartbeats to a GC) make no span.

Span names are the full method (`dark_tower.internal.MeetingControllerService/
AssignMeetingWithMh`), with `rpc.system`, `rpc.service`, `rpc.method` and
`rpc.grpc.status_code`; a status other than OK is an ERROR span. Each traced server call is one
DEBUG line on `darktower.requests`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from darktower.runtime.tracing import TRACE_HEADERS, extract, inject, started_span

__all__ = ["ClientTracing", "ServerTracing"]

log = logging.getLogger("darktower.requests")

if TYPE_CHECKING:
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
    _ClientInterceptor = grpc.aio.UnaryUnaryClientInterceptor[Any, Any]
    _Handler = grpc.RpcMethodHandler[Any, Any]
else:
    _ServerInterceptor = grpc.aio.ServerInterceptor
    _ClientInterceptor = grpc.aio.UnaryUnaryClientInterceptor
    _Handler = grpc.RpcMethodHandler


def _method_name(method: str | bytes) -> str:
    return (method.decode() if isinstance(method, bytes) else method).lstrip("/")


def _rpc_attributes(name: str) -> dict[str, str]:
    service, _, method = name.partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}


def _record_code(span: Span, code: grpc.StatusCode | None) -> None:
    code = code or grpc.StatusCode.OK
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code != grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, code.name))


class ClientTracing(_ClientInterceptor):
    """A CLIENT span and the `traceparent` metadata for unary calls made inside a span."""

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        if not trace.get_current_span().get_span_context().is_valid:
            return await continuation(client_call_details, request)
        name = _method_name(client_call_details.method)
        with started_span(name, kind=SpanKind.CLIENT, attributes=_rpc_attributes(name)) as span:
            # Ours replaces any the caller set, so the server sees this span as the parent.
            metadata = grpc.aio.Metadata(
                *(
                    (key, value)
                    for key, value in client_call_details.metadata or ()
                    if key not in TRACE_HEADERS
                )
            )
            for key, value in inject():
                metadata.add(key, value)
            details = grpc.aio.ClientCallDetails(
                client_call_details.method,
                client_call_details.timeout,
                metadata,
                client_call_details.credentials,
                client_call_details.wait_for_ready,
            )
            call = await continuation(details, request)
            # The span lasts as long as the call: its code is known once it has ended.
            _record_code(span, await call.code())
            return call


class ServerTracing(_ServerInterceptor):
    """A SERVER span around unary calls whose metadata carries a `traceparent`."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler:
        handler = await continuation(handler_call_details)
        metadata = tuple(handler_call_details.invocation_metadata or ())
        if handler is None or handler.unary_unary is None:
            return handler
        if not any(key == "traceparent" for key, _ in metadata):
            return handler
        parent = extract(metadata)
        name = _method_name(handler_call_details.method)
        inner: Callable[[Any, Any], Awaitable[Any]] = handler.unary_unary

        async def traced(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            with started_span(
                name, context=parent, kind=SpanKind.SERVER, attributes=_rpc_attributes(name)
            ) as span:
                code: grpc.StatusCode | None = grpc.StatusCode.UNKNOWN
                try:
                    answer = await inner(request, context)
                    code = context.code()
                    return answer
                except BaseException:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                finally:
                    _record_code(span, code)
                    log.debug(
                        "gRPC %s -> %s in %.1f ms",
                        name,
                        (code or grpc.StatusCode.OK).name,
                        (time.perf_counter() - started) * 1000,
                    )

        return grpc.unary_unary_rpc_method_handler(
            traced,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
