"""What the operator's tools read is really there: a real GC and a real MC (processes, TLS gRPC)
are scraped, and every metric named by a query of the Grafana dashboard
(deploy/grafana/darktower.json), an expression of the Prometheus rules
(deploy/prometheus/darktower-rules.yaml) or a runbook (docs/runbooks/) is exported by one of
them; every counter has a sample from the start (0, so `rate()` has data), no `*_created`
series doubles a family, both answer the gRPC health check without a token, and a draining MC
answers it NOT_SERVING at once while it still runs."""

from __future__ import annotations

import json
import re
import signal
from functools import partial
from pathlib import Path

import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.fleet import Fleet, GcProc, McProc
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "darktower.json"
RULES = ROOT / "deploy" / "prometheus" / "darktower-rules.yaml"
RUNBOOKS = ROOT / "docs" / "runbooks"
OUR_PREFIXES = ("mc_", "gc_", "grpc_server_", "service_auth_")


def metric_names(expression: str) -> set[str]:
    """The metric names an expression or a text mentions (quoted label values left out)."""
    unquoted = re.sub(r'"[^"]*"', '""', expression)
    return {
        token
        for token in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", unquoted)
        if token.startswith(OUR_PREFIXES)
    }


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(found) > 30
    return found


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    found = [rule["expr"] for group in groups for rule in group["rules"]]
    assert len(found) > 15
    return found


def runbook_names() -> set[str]:
    names: set[str] = set()
    for page in RUNBOOKS.glob("*.md"):
        for code in re.findall(r"`([^`]+)`", page.read_text()):
            names |= metric_names(code)
    return names


def exported(exposition: str) -> set[str]:
    """Every sample name of an exposition, plus each histogram's family name."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        if family.type == "histogram":
            names.add(family.name)
    return names


def counters_without_samples(exposition: str) -> list[str]:
    return [
        family.name
        for family in text_string_to_metric_families(exposition)
        if family.type == "counter" and not family.samples
    ]


def test_the_metric_name_reader_sees_what_it_should() -> None:
    assert metric_names(
        'sum by (reason) (rate(mc_assignments_total{result="gc_x"}[5m])) / '
        "darktower:gc_placements:rate5m > on() mc_ready"
    ) == {"mc_assignments_total", "mc_ready"}


def test_dashboards_rules_and_runbooks_name_only_exported_metrics(
    fleet: Fleet, database_url: str
) -> None:
    # A drain long enough to be watched (the meeting below keeps it going).
    gc = fleet.up(database_url, mcs={"mc-1": {"drain_seconds": "6"}}, mhs={"mh-1": "zone-a"})
    mc = fleet.mcs["mc-1"]
    gc_text, mc_text = gc.metrics(), mc.metrics()

    available = exported(gc_text) | exported(mc_text)
    for source, used in (
        ("dashboard", set().union(*map(metric_names, dashboard_expressions()))),
        ("rules", set().union(*map(metric_names, rule_expressions()))),
        ("runbooks", runbook_names()),
    ):
        assert used, source
        missing = sorted(used - available)
        assert missing == [], f"{source} names metrics nobody exports: {missing}"

    for name, text in (("gc", gc_text), ("mc", mc_text)):
        assert counters_without_samples(text) == [], name
        assert "_created" not in text, name

    # The kubelet's view (no token) of both processes over their real gRPC ports (TLS here).
    # The gRPC status follows readiness within its refresh (1 s), as a probe polls it.
    for process in (gc, mc):
        wait_until(partial(serving, process), timeout=10, what=f"{process.name} SERVING")

    # A draining MC says NOT_SERVING at once, while it still runs and serves its meeting.
    assert gc.join("observed").status_code == 200
    mc.send_signal(signal.SIGTERM)
    waited = wait_until(lambda: grpc_health(mc) == NOT_SERVING, timeout=3, what="mc-1 NOT_SERVING")
    assert mc.running, mc.log()
    assert waited < 3
    assert mc.wait(timeout=30) == 0, mc.log()
    assert grpc_health(gc) == SERVING


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def serving(process: GcProc | McProc) -> bool:
    return bool(grpc_health(process) == SERVING)


def grpc_health(process: GcProc | McProc) -> int:
    with process.channel() as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
    return int(answer.status)
