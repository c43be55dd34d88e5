"""One join is one trace, across real processes (README "Tracing and logs").

A GC and an MC process (TLS gRPC between them, as `darktower dev`) run with JSON logs at DEBUG
and `OTEL_TRACES_EXPORTER=console`, so each writes its spans and its log lines to its output.
A join sent with a W3C `traceparent` must come back as one trace: the GC's HTTP server span
(child of the client's span), the placement under it, the GC's AssignMeetingWithMh client
span under that, the MC's server span under that (the traceparent crossed the gRPC hop in
metadata), and the MC's fenced Redis `acquire` under that; and log lines of both processes
carry the trace id.

Attacks: a malformed, a zero and an oversized `traceparent` are ignored — the join succeeds and
starts a fresh trace of its own.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.fleet import Fleet, GcProc, McProc
from tests.support.tracing import Span, log_lines, spans
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

JOIN_ROUTE = "POST /v1/meetings/{meeting_id}/join"
ASSIGN = "dark_tower.internal.MeetingControllerService/AssignMeetingWithMh"
WAIT_S = 20.0


def traceparent() -> tuple[str, str, str]:
    """(header, trace id, the client's span id) of a fresh sampled W3C traceparent."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def one(found: list[Span], what: str) -> Span:
    assert len(found) == 1, f"expected one {what}, found {found}"
    return found[0]


def wait_for(output: Callable[[], str], condition: Callable[[str], bool], what: str) -> str:
    """The output once `condition` holds for it (the console exporter writes as spans end)."""
    seen = ""

    def holds() -> bool:
        nonlocal seen
        seen = output()
        return condition(seen)

    wait_until(holds, timeout=WAIT_S, what=what)
    return seen


def assigned_in(trace_id: str) -> Callable[[str], bool]:
    """Whether an output has an AssignMeetingWithMh span of trace `trace_id`."""

    def found(output: str) -> bool:
        return any(s.trace_id == trace_id and s.name == ASSIGN for s in spans(output))

    return found


def _join(gc: GcProc, meeting_id: str, headers: dict[str, str]) -> Any:
    response = gc.client.post(f"{gc.http_url}/v1/meetings/{meeting_id}/join", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def traced(
    fleet: Fleet, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[GcProc, McProc]:
    # Inherited by every process the fleet starts (it drops only MC_*/GC_* variables).
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    gc = fleet.start_gc(database_url, wait=False, GC_LOG_FORMAT="json", GC_LOG_LEVEL="DEBUG")
    mc = fleet.start_mc(gc, "mc-1", log_format="json", log_level="DEBUG")
    fleet.start_mh_group(gc, {"mh-1": "zone-a"})
    gc.wait_ready()
    fleet.wait_fleet(gc, mcs=["mc-1"], mhs=["mh-1"])
    return gc, mc


def test_joins_are_traced_across_processes(traced: tuple[GcProc, McProc]) -> None:
    """One fleet (starting one is the slow part) for both checks."""
    gc, mc = traced
    one_join_is_one_trace_across_gc_mc_and_redis(gc, mc)
    a_bad_traceparent_is_ignored_and_the_join_starts_a_fresh_trace(gc, mc)
    gc.check_running()
    mc.check_running()


def one_join_is_one_trace_across_gc_mc_and_redis(gc: GcProc, mc: McProc) -> None:
    header, trace_id, client_span_id = traceparent()
    _join(gc, "traced-1", {"traceparent": header})

    def in_trace(output: str) -> list[Span]:
        return [s for s in spans(output) if s.trace_id == trace_id]

    gc_output = wait_for(
        gc.log, lambda out: any(s.name == JOIN_ROUTE for s in in_trace(out)), "the GC's span"
    )
    mc_output = wait_for(
        mc.log, lambda out: any(s.name == "redis acquire" for s in in_trace(out)), "the MC's"
    )
    gc_spans, mc_spans = in_trace(gc_output), in_trace(mc_output)

    http = one([s for s in gc_spans if s.name == JOIN_ROUTE], "GC HTTP span")
    assert (http.kind, http.parent_id) == ("SERVER", client_span_id)
    assert http.attributes["http.route"] == "/v1/meetings/{meeting_id}/join"
    assert http.attributes["http.response.status_code"] == 200
    assert http.resource["service.name"] == "darktower-gc"
    assert http.resource["service.instance.id"] == "gc-1"

    client = one([s for s in gc_spans if s.name == ASSIGN], "GC AssignMeetingWithMh span")
    assert client.kind == "CLIENT"
    assert client.attributes["rpc.grpc.status_code"] == 0
    # The placement under the HTTP span (perhaps through FastAPI's own spans), the MC call
    # under the placement.
    placement = one([s for s in gc_spans if s.name == "placement"], "placement span")
    assert client.parent_id == placement.span_id
    assert placement.attributes["darktower.meeting_id"] == "traced-1"
    by_id = {s.span_id: s for s in gc_spans}
    ancestor = placement
    while ancestor.parent_id in by_id and ancestor.span_id != http.span_id:
        ancestor = by_id[ancestor.parent_id]
    assert ancestor.span_id == http.span_id, gc_spans

    server = one([s for s in mc_spans if s.name == ASSIGN], "MC AssignMeetingWithMh span")
    assert (server.kind, server.parent_id) == ("SERVER", client.span_id)
    assert server.resource["service.name"] == "darktower-mc"
    assert server.resource["service.instance.id"] == "mc-1"
    acquire = one([s for s in mc_spans if s.name == "redis acquire"], "MC fenced acquire span")
    assert (acquire.parent_id, acquire.attributes["db.operation.name"]) == (
        server.span_id,
        "acquire",
    )

    # Log lines of both processes, inside the trace, tied to their spans.
    gc_lines = [line for line in log_lines(gc_output) if line.get("trace_id") == trace_id]
    mc_lines = [line for line in log_lines(mc_output) if line.get("trace_id") == trace_id]
    assert any(line["span_id"] == http.span_id for line in gc_lines), gc_lines
    assert any(line["span_id"] == server.span_id for line in mc_lines), mc_lines
    for line, service, instance in [
        *((line, "darktower-gc", "gc-1") for line in gc_lines),
        *((line, "darktower-mc", "mc-1") for line in mc_lines),
    ]:
        assert {"time", "level", "logger", "message"} <= line.keys()
        assert (line["service"], line["instance_id"]) == (service, instance)


BAD_TRACEPARENTS = {
    "malformed": "00-not-a-trace-id-01",
    "zero trace id": "00-" + "0" * 32 + "-" + "1" * 16 + "-01",
    "oversized": "00-" + "a" * 32 + "-" + "b" * 16 + "-01" + "-x" * 4000,
}


def a_bad_traceparent_is_ignored_and_the_join_starts_a_fresh_trace(gc: GcProc, mc: McProc) -> None:
    for case, bad in BAD_TRACEPARENTS.items():
        meeting_id = f"bad-tp-{secrets.token_hex(4)}"
        _join(gc, meeting_id, {"traceparent": bad, "tracestate": "x=" + "y" * 600})

        def join_spans(output: str, meeting_id: str = meeting_id) -> list[Span]:
            return [s for s in spans(output) if meeting_id in s.attributes.get("url.path", "")]

        gc_output = wait_for(gc.log, lambda out: bool(join_spans(out)), f"{case}: GC span")
        http = one(join_spans(gc_output), f"{case}: join span")
        assert http.parent_id is None, case  # a root: nothing of the client's header was used
        assert len(http.trace_id) == 32 and http.trace_id not in bad, case
        # The MC still continues the GC's (fresh) trace.
        wait_for(mc.log, assigned_in(http.trace_id), f"{case}: the MC's span in the fresh trace")
