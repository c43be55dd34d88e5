"""The tracer provider of a service process (OpenTelemetry SDK), from the standard `OTEL_*`
variables.

`configure_tracing(service, instance_id)` installs the SDK's provider with the resource
`service.name` (darktower-gc, darktower-mc, darktower-mh-sim; `OTEL_SERVICE_NAME` wins) and
`service.instance.id` (the id), plus `OTEL_RESOURCE_ATTRIBUTES`. Spans are always made (so the
JSON logs carry trace and span ids); what leaves the process is chosen by the standard
`OTEL_TRACES_EXPORTER`, which here defaults to `none` (the OpenTelemetry default is `otlp`: a
service must not start sending data somewhere unless told to):

* `none` — nothing is exported;
* `otlp` — OTLP over HTTP/protobuf, batched, configured by the standard
  `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `…_HEADERS`,
  `…_TIMEOUT`, `…_CERTIFICATE` and `OTEL_BSP_*`. The exporter is a core dependency; an
  install without it stops with one line saying what to install;
* `console` — each span as JSON on stdout when it ends (debugging, and the trace tests).

`OTEL_TRACES_SAMPLER` picks the sampler (default: parent-based, always on);
`OTEL_SDK_DISABLED=true` installs nothing (no spans, no ids in the logs).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.util.types import AttributeValue

from darktower.runtime.serving import StartupError

__all__ = [
    "EXPORTERS",
    "OTLP_PROTOCOL",
    "SHUTDOWN_SECONDS",
    "Tracing",
    "configure_tracing",
    "exporter_names",
]

EXPORTERS = ("none", "otlp", "console")
OTLP_PROTOCOL = "http/protobuf"
# Longest a stopping process waits for its last spans to be sent.
SHUTDOWN_SECONDS = 5.0


@dataclass
class Tracing:
    """What `configure_tracing` installed; `shutdown()` flushes and stops its exporters."""

    provider: TracerProvider | None
    exporters: tuple[str, ...] = ()

    def shutdown(self, timeout: float = SHUTDOWN_SECONDS) -> None:
        """Send what is pending and stop, waiting `timeout` seconds at most: a collector that
        does not answer must not hold a stopping service past its grace period (the SDK's own
        shutdown waits 30 s, plus the export's timeout)."""
        if self.provider is None:
            return
        worker = threading.Thread(
            target=self.provider.shutdown, name="tracing-shutdown", daemon=True
        )
        worker.start()
        worker.join(timeout)


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() == "true"


def exporter_names(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The exporters `OTEL_TRACES_EXPORTER` names (comma-separated; unset, empty or `none`:
    none); StartupError for a name not in `EXPORTERS`."""
    raw = environ.get("OTEL_TRACES_EXPORTER", "") or "none"
    names = tuple(n.strip().lower() for n in raw.split(",") if n.strip())
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise StartupError(
            f"OTEL_TRACES_EXPORTER: unknown exporter {unknown[0]!r} (one of {', '.join(EXPORTERS)})"
        )
    return tuple(n for n in names if n != "none")


def _otlp_processor(environ: Mapping[str, str]) -> SpanProcessor:
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or OTLP_PROTOCOL
    )
    if protocol != OTLP_PROTOCOL:
        raise StartupError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL: only {OTLP_PROTOCOL} is supported, not {protocol!r}"
        )
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise StartupError(
            "OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter: "
            "pip install opentelemetry-exporter-otlp-proto-http"
        ) from None
    # The exporter reads its endpoint, headers, timeout and certificate from OTEL_*.
    return BatchSpanProcessor(OTLPSpanExporter())


def configure_tracing(
    service: str, instance_id: str, *, environ: Mapping[str, str] | None = None
) -> Tracing:
    """Install the process's tracer provider for `service` (`darktower-gc`, …) instance
    `instance_id`, with the exporters `OTEL_TRACES_EXPORTER` names (module docstring).

    `StartupError` (one line) for an unknown exporter, an unsupported OTLP protocol, or OTLP
    without its package. Call once per process, before serving."""
    env = os.environ if environ is None else environ
    if _flag(env, "OTEL_SDK_DISABLED"):
        return Tracing(None)
    names = exporter_names(env)
    processors = [
        _otlp_processor(env)
        if name == "otlp"
        else SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout))
        for name in names
    ]
    attributes: dict[str, AttributeValue] = {SERVICE_INSTANCE_ID: instance_id}
    if not env.get("OTEL_SERVICE_NAME"):
        attributes[SERVICE_NAME] = service
    # Not shut down at exit by the SDK (unbounded), but by `Tracing.shutdown` (bounded).
    provider = TracerProvider(resource=Resource.create(attributes), shutdown_on_exit=False)
    for processor in processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return Tracing(provider, names)
