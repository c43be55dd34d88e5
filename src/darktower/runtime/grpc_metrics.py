"""gRPC server metrics, by method and status code, for every service's gRPC server.

`GrpcServerMetrics` is a grpc.aio server interceptor, installed first (outermost), so it also
counts the calls the auth interceptor refuses:

* `grpc_server_started_total{grpc_service, grpc_method}` — calls that reached a handler;
* `grpc_server_handled_total{grpc_service, grpc_method, grpc_code}` — calls answered, by code;
* `grpc_server_handling_seconds{grpc_service, grpc_method}` — time to answer (a streaming
  call: until its stream ended).

The labels come from the services the server really serves (`methods_of`): a call to any
other method name — whatever a caller sends — is counted as `grpc_service="unknown",
grpc_method="unknown"`, so a caller cannot create series. Every served method has its
`started` series and a `handled` series for each code in `KNOWN_CODES` at 0 from the start.
Calls refused by gRPC's core before any interceptor runs (over the concurrent-call cap, or a
message over the size limit) are not seen here.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from google.protobuf.descriptor import ServiceDescriptor
from prometheus_client import Counter, Histogram

__all__ = [
    "HANDLED",
    "HANDLING_SECONDS",
    "KNOWN_CODES",
    "STARTED",
    "GrpcServerMetrics",
    "methods_of",
]

STARTED = Counter(
    "grpc_server_started_total",
    "gRPC calls started on this server, by service and method.",
    ["grpc_service", "grpc_method"],
)
HANDLED = Counter(
    "grpc_server_handled_total",
    "gRPC calls answered by this server, by service, method and status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)
HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time this server took to answer a gRPC call, by service and method.",
    ["grpc_service", "grpc_method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

KNOWN_CODES = (
    "OK",
    "INVALID_ARGUMENT",
    "UNAUTHENTICATED",
    "PERMISSION_DENIED",
    "NOT_FOUND",
    "RESOURCE_EXHAUSTED",
    "UNAVAILABLE",
    "INTERNAL",
)
"""The codes darktower's servers answer (docs/wire-protocol.md): their series start at 0."""

UNKNOWN = ("unknown", "unknown")

if TYPE_CHECKING:
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
    _Handler = grpc.RpcMethodHandler[Any, Any]
    _Context = grpc.aio.ServicerContext[Any, Any]
else:  # the runtime classes are not generic
    _ServerInterceptor = grpc.aio.ServerInterceptor
    _Handler = grpc.RpcMethodHandler
    _Context = grpc.aio.ServicerContext


def methods_of(services: Iterable[ServiceDescriptor]) -> dict[str, tuple[str, str]]:
    """`/package.Service/Method` → (`package.Service`, `Method`) for every method of
    `services`."""
    return {
        f"/{service.full_name}/{method.name}": (service.full_name, method.name)
        for service in services
        for method in service.methods
    }


def _code_name(context: _Context, default: str) -> str:
    code = context.code()
    if code is None:
        return default
    if isinstance(code, grpc.StatusCode):
        return code.name
    for known in grpc.StatusCode:  # grpc.aio may hand back the numeric code
        if known.value[0] == code:
            return known.name
    return "UNKNOWN"


class GrpcServerMetrics(_ServerInterceptor):
    """Counts and times every call of the server it is installed on (see the module doc)."""

    def __init__(self, services: Iterable[ServiceDescriptor]) -> None:
        self._methods = methods_of(services)
        for service, method in self._methods.values():
            STARTED.labels(service, method)
            HANDLING_SECONDS.labels(service, method)
            for code in KNOWN_CODES:
                HANDLED.labels(service, method, code)
        # Served method → (the handler found for it, its timed wrapper): a server hands out
        # the same handler call after call, so it is wrapped once, not on every call.
        self._wrapped: dict[str, tuple[_Handler, _Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        labels = self._methods.get(method, UNKNOWN)
        wrapped = _wrap(handler, _Series(labels))
        if labels is not UNKNOWN:  # only served methods: a caller's made-up names add nothing
            self._wrapped[method] = (handler, wrapped)
        return wrapped


def _wrap(handler: _Handler, series: _Series) -> _Handler:
    # A handler is a named tuple; its typed stubs do not say so, hence `Any` here.
    found: Any = handler
    codec = {
        "request_deserializer": found.request_deserializer,
        "response_serializer": found.response_serializer,
    }
    if found.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(_timed(found.unary_unary, series), **codec)
    if found.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(_timed(found.stream_unary, series), **codec)
    if found.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _timed_stream(found.unary_stream, series), **codec
        )
    if found.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            _timed_stream(found.stream_stream, series), **codec
        )
    return handler


class _Series:
    """The series of one method, looked up once (a label lookup takes a lock each time)."""

    __slots__ = ("_handled", "_labels", "seconds", "started")

    def __init__(self, labels: tuple[str, str]) -> None:
        self._labels = labels
        self.started = STARTED.labels(*labels)
        self.seconds = HANDLING_SECONDS.labels(*labels)
        self._handled: dict[str, Any] = {}

    def handled(self, code: str) -> Any:
        child = self._handled.get(code)
        if child is None:
            child = self._handled[code] = HANDLED.labels(*self._labels, code)
        return child


def _record(series: _Series, code: str, started: float) -> None:
    series.handled(code).inc()
    series.seconds.observe(time.perf_counter() - started)


def _timed(
    behavior: Callable[[Any, _Context], Any], series: _Series
) -> Callable[[Any, _Context], Any]:
    async def call(request: Any, context: _Context) -> Any:
        series.started.inc()
        started = time.perf_counter()
        code = "UNKNOWN"
        try:
            result = behavior(request, context)
            if inspect.isawaitable(result):
                result = await result
            code = _code_name(context, "OK")
            return result
        except grpc.aio.AbortError:
            code = _code_name(context, "UNKNOWN")
            raise
        except BaseException:
            code = "CANCELLED" if context.cancelled() else "UNKNOWN"
            raise
        finally:
            _record(series, code, started)

    return call


def _timed_stream(
    behavior: Callable[[Any, _Context], Any], series: _Series
) -> Callable[[Any, _Context], Any]:
    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: _Context) -> AsyncIterator[Any]:
            series.started.inc()
            started = time.perf_counter()
            code = "UNKNOWN"
            try:
                async for response in behavior(request, context):
                    yield response
                code = _code_name(context, "OK")
            except grpc.aio.AbortError:
                code = _code_name(context, "UNKNOWN")
                raise
            except BaseException:
                code = "CANCELLED" if context.cancelled() else "UNKNOWN"
                raise
            finally:
                _record(series, code, started)

        return stream
    # A coroutine that writes with `context.write` (the health service's Watch).
    return _timed(behavior, series)
