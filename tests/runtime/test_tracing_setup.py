"""The tracer provider a service installs from `OTEL_*` (darktower.runtime.tracing_setup).

OTLP for real: a child process configured only through the standard variables sends its spans
to a collector of ours on loopback (HTTP/protobuf), with the resource naming the service and
its instance and the headers `OTEL_EXPORTER_OTLP_HEADERS` gives. Refusals happen before
anything is installed, as one line (a `StartupError`: `darktower mc`/`gc`/`mh-sim` print it and
exit 2): an unknown exporter, a protocol other than HTTP/protobuf, OTLP without its package.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from darktower.runtime.serving import StartupError
from darktower.runtime.tracing_setup import configure_tracing, exporter_names
from tests.support.processes import clean_env

pytestmark = pytest.mark.timeout(60)

CHILD = """
from darktower.runtime.tracing import tracer
from darktower.runtime.tracing_setup import configure_tracing, exporter_names

tracing = configure_tracing("darktower-gc", "gc-9")
with tracer().start_as_current_span("probe", attributes={"k": "v"}):
    pass
tracing.shutdown()
print("exporters:", ",".join(tracing.exporters))
"""


class Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append((self.path, dict(self.headers.items()), body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, dict[str, str], bytes]]]]:
    received: list[tuple[str, dict[str, str], bytes]] = []
    handler = type("Handler", (Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_otlp_sends_the_spans_to_the_collector_the_variables_name(
    collector: tuple[str, list[tuple[str, dict[str, str], bytes]]],
) -> None:
    endpoint, received = collector
    env = clean_env(
        {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_HEADERS": "x-collector-key=k-123",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
        }
    )
    done = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=50
    )
    assert done.returncode == 0, done.stderr
    assert "exporters: otlp" in done.stdout
    [(path, headers, body)] = received
    assert path == "/v1/traces"
    assert headers["x-collector-key"] == "k-123"
    request = ExportTraceServiceRequest.FromString(body)
    [resource_spans] = request.resource_spans
    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert resource["service.name"] == "darktower-gc"
    assert resource["service.instance.id"] == "gc-9"
    assert resource["deployment.environment"] == "test"
    [span] = [s for scope in resource_spans.scope_spans for s in scope.spans]
    assert span.name == "probe"


def test_a_collector_that_does_not_answer_does_not_hold_the_exit() -> None:
    # It accepts connections and never answers; the export waits up to a minute for it, the
    # SDK's own shutdown up to 30 s: the process still ends after SHUTDOWN_SECONDS.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        env = clean_env(
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{silent.getsockname()[1]}",
                "OTEL_EXPORTER_OTLP_TIMEOUT": "60",
            }
        )
        done = subprocess.run(
            [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=25
        )
    assert done.returncode == 0, done.stderr
    assert "exporters: otlp" in done.stdout


@pytest.mark.parametrize(
    ("value", "names"),
    [
        (None, ()),  # off unless asked (the OpenTelemetry default would be otlp)
        ("", ()),
        ("none", ()),
        ("console", ("console",)),
        (" OTLP , console ", ("otlp", "console")),
        ("none,otlp", ("otlp",)),
    ],
)
def test_which_exporters(value: str | None, names: tuple[str, ...]) -> None:
    environ = {} if value is None else {"OTEL_TRACES_EXPORTER": value}
    assert exporter_names(environ) == names


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"OTEL_TRACES_EXPORTER": "zipkin"},
            "OTEL_TRACES_EXPORTER: unknown exporter 'zipkin' (one of none, otlp, console)",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL: only http/protobuf is supported, not 'grpc'",
        ),
    ],
)
def test_a_bad_setting_is_refused_before_anything_is_installed(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(StartupError) as refused:
        configure_tracing("darktower-mc", "mc-1", environ=environ)
    assert str(refused.value) == message


def test_otlp_without_its_package_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # As on an install where the exporter was removed: the import fails.
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(StartupError) as refused:
        configure_tracing("darktower-mc", "mc-1", environ={"OTEL_TRACES_EXPORTER": "otlp"})
    assert "pip install opentelemetry-exporter-otlp-proto-http" in str(refused.value)


def test_sdk_disabled_installs_nothing() -> None:
    tracing = configure_tracing("darktower-mc", "mc-1", environ={"OTEL_SDK_DISABLED": "true"})
    assert tracing.provider is None
    tracing.shutdown()
