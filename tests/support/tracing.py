"""Traces in tests: the spans and JSON log lines a process wrote, and an in-memory exporter
for in-process tests.

A process run with `OTEL_TRACES_EXPORTER=console` and `<SVC>_LOG_FORMAT=json` writes both to
its output: spans as indented JSON objects (stdout), log records as one JSON object per line
(stderr). `json_objects` reads every JSON object that starts a line of such an output;
`spans` and `log_lines` tell them apart.

`memory_spans()` installs, once per test session, the SDK's tracer provider with an
in-memory exporter as the process's provider (OpenTelemetry allows one per process) and
returns that exporter, cleared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

__all__ = ["Span", "json_objects", "log_lines", "memory_spans", "spans"]

_DECODER = json.JSONDecoder()
_EXPORTER: InMemorySpanExporter | None = None


def json_objects(output: str) -> list[dict[str, Any]]:
    """Every JSON object that begins at the start of a line of `output`, in order; other
    text (and a line that only looks like one) is skipped."""
    found: list[dict[str, Any]] = []
    at = 0
    while (start := output.find("{", at)) != -1:
        if start > 0 and output[start - 1] != "\n":
            at = start + 1
            continue
        try:
            value, end = _DECODER.raw_decode(output, start)
        except json.JSONDecodeError:
            at = start + 1
            continue
        if isinstance(value, dict):
            found.append(value)
        at = end
    return found


@dataclass(frozen=True)
class Span:
    """One span as the console exporter wrote it; ids in lower-case hex, no `0x`."""

    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str | None
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status: str


def _hex(value: str | None) -> str | None:
    return value.removeprefix("0x") if value else None


def spans(output: str) -> list[Span]:
    """The spans of a process's output."""
    return [
        Span(
            name=o["name"],
            kind=o["kind"].removeprefix("SpanKind."),
            trace_id=_hex(o["context"]["trace_id"]) or "",
            span_id=_hex(o["context"]["span_id"]) or "",
            parent_id=_hex(o.get("parent_id")),
            attributes=o.get("attributes") or {},
            resource=(o.get("resource") or {}).get("attributes") or {},
            status=o.get("status", {}).get("status_code", ""),
        )
        for o in json_objects(output)
        if "context" in o and "kind" in o
    ]


def log_lines(output: str) -> list[dict[str, Any]]:
    """The JSON log records of a process's output (objects with a level and a message)."""
    return [o for o in json_objects(output) if "level" in o and "message" in o]


def memory_spans() -> InMemorySpanExporter:
    """The session's in-memory span exporter (installed on first use), emptied."""
    global _EXPORTER
    if _EXPORTER is None:
        provider = TracerProvider()
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        if trace.get_tracer_provider() is not provider:
            raise RuntimeError("another tracer provider was installed in this test process")
        _EXPORTER = exporter
    _EXPORTER.clear()
    return _EXPORTER
