"""Traces across processes: the W3C `traceparent` that carries a trace from one process to the
next, and spans inside a request (OpenTelemetry's API only; `tracing_setup` installs the SDK).

Propagation is W3C Trace Context only (`traceparent`, `tracestate`), on purpose not the
globally configured propagators: baggage from a client is not carried into the fleet. A
carrier value longer than `MAX_HEADER_CHARS` is dropped unread; a malformed one is ignored by
the propagator: either way the request starts a fresh trace, and nothing is logged (a client
must not be able to write to our logs by sending bad headers).

Spans inside a request (`child_span`: the fenced Redis scripts) are made only when a span is
current, so periodic work (Redis pings, heartbeats) makes no root spans of its own.

Every span darktower makes goes through `started_span`: an exception leaving it marks it ERROR
with `error.type` (the exception's class) and nothing else — never its message or traceback,
which could hold a secret: spans are exported as they are, with no redaction filter in between
as there is for log records.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

__all__ = [
    "MAX_HEADER_CHARS",
    "TRACE_HEADERS",
    "child_span",
    "current_ids",
    "extract",
    "inject",
    "started_span",
    "tracer",
]

# The headers (and gRPC metadata keys) of W3C Trace Context.
TRACE_HEADERS = ("traceparent", "tracestate")
# W3C caps tracestate at 512 characters; a version-00 traceparent is 55.
MAX_HEADER_CHARS = 512

_PROPAGATOR = TraceContextTextMapPropagator()
# A proxy: it follows the provider installed later (no-op until then) and keeps the real
# tracer once there is one (getting a tracer per span costs more than the span).
_TRACER = trace.get_tracer("darktower")


def tracer() -> trace.Tracer:
    """darktower's tracer, from the provider installed (a no-op one before)."""
    return _TRACER


def extract(carrier: Iterable[tuple[str | bytes, str | bytes]]) -> otel_context.Context:
    """The context of a remote parent named by the `traceparent` (and `tracestate`) pairs of
    `carrier` (ASGI headers as bytes, or gRPC metadata; names in lower case, the first of each
    counts); an empty context (a fresh trace) when there is none, it is too long, or it is
    malformed."""
    found: dict[str, str] = {}
    for raw_name, value in carrier:
        name = raw_name.decode("latin-1") if isinstance(raw_name, bytes) else raw_name
        if name in TRACE_HEADERS and name not in found:
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            if len(text) > MAX_HEADER_CHARS:
                return otel_context.Context()
            found[name] = text
    if "traceparent" not in found:
        return otel_context.Context()
    return _PROPAGATOR.extract(found, context=otel_context.Context())


def inject() -> list[tuple[str, str]]:
    """The `traceparent` (and `tracestate`) of the current span, as metadata pairs; [] when no
    span is current."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return list(carrier.items())


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span in hex, None outside a span."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return trace.format_trace_id(span_context.trace_id), trace.format_span_id(span_context.span_id)


@contextmanager
def child_span(
    name: str,
    attributes: Mapping[str, AttributeValue] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Iterator[Span | None]:
    """A span `name` under the current one (`started_span`), or nothing (None) when no span is
    current."""
    if not trace.get_current_span().get_span_context().is_valid:
        yield None
        return
    with started_span(name, kind=kind, attributes=attributes) as span:
        yield span


@contextmanager
def started_span(
    name: str,
    *,
    context: otel_context.Context | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Iterator[Span]:
    """A span made current for the block (under `context`'s span, else the current one); an
    exception leaving the block sets `error.type` and the ERROR status, nothing of its text."""
    with tracer().start_as_current_span(
        name,
        context=context,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            span.set_attribute("error.type", type(exc).__qualname__)
            status = getattr(span, "status", None)  # an ERROR with a reason set inside stays
            if status is None or status.status_code is not StatusCode.ERROR:
                span.set_status(Status(StatusCode.ERROR))
            raise
