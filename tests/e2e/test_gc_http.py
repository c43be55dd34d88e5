"""The GC's HTTP surface end to end: the OpenAPI document, the read API's shapes, /metrics,
health — and the database password, which must appear in no log line, no metric and no HTTP
body, whether the GC runs or fails to start (docs/reference.md)."""

from __future__ import annotations

import secrets
import signal

import httpx
import pytest
import redis
from sqlalchemy.engine import make_url

from darktower.embedded.redis import free_port
from tests.e2e.fleet import (
    REGION,
    STALENESS_S,
    SWEEP_S,
    Fleet,
    metric,
    postgres_base_url,
    sql_rows,
    wait_until,
)

pytestmark = pytest.mark.slow

MCS = {"mc-a": {"max_meetings": "50"}, "mc-b": {"max_meetings": "60"}}
MHS = {"mh-a1": "zone-a", "mh-b1": "zone-b"}
CONTROLLER_FIELDS = {
    "id",
    "region",
    "health",
    "grpc_endpoint",
    "webtransport_endpoint",
    "max_meetings",
    "current_meetings",
    "max_participants",
    "current_participants",
    "cpu_percent",
    "memory_percent",
    "last_heartbeat_at",
    "heartbeat_age_s",
}
MEDIA_HANDLER_FIELDS = {
    "id",
    "region",
    "zone",
    "health",
    "webtransport_endpoint",
    "max_streams",
    "current_streams",
    "last_report_at",
}


def _password() -> str:
    return f"E2eSecret-{secrets.token_hex(8)}"


def test_openapi_read_api_metrics_and_health(
    fleet: Fleet, database_url: str, redis_db: redis.Redis
) -> None:
    gc = fleet.up(database_url, mcs=MCS, mhs=MHS)

    paths = gc.json("/openapi.json")["paths"]
    join = paths["/v1/meetings/{meeting_id}/join"]["post"]
    assert {"200", "400", "503"} <= set(join["responses"])
    for read in (
        "/v1/meetings/{meeting_id}",
        "/v1/controllers",
        "/v1/media-handlers",
        "/v1/placements/recent",
    ):
        assert "get" in paths[read], read

    controllers = gc.json("/v1/controllers")
    assert {c["id"] for c in controllers} == set(MCS)
    for c in controllers:
        assert set(c) == CONTROLLER_FIELDS
        assert (c["region"], c["health"]) == (REGION, "healthy")
        assert c["grpc_endpoint"] == fleet.mcs[c["id"]].grpc_endpoint
        assert c["max_meetings"] == int(MCS[c["id"]]["max_meetings"])
        assert c["current_meetings"] == 0
        assert 0 <= c["heartbeat_age_s"] <= STALENESS_S
    handlers = gc.json("/v1/media-handlers")
    assert {h["id"]: h["zone"] for h in handlers} == MHS
    for h in handlers:
        assert set(h) == MEDIA_HANDLER_FIELDS
        assert (h["region"], h["health"]) == (REGION, "healthy")
        assert h["webtransport_endpoint"].startswith("https://")
        assert 0 <= h["current_streams"] <= h["max_streams"]

    assert gc.join("metrics-1").status_code == 200
    exposition = gc.metrics()
    assert metric(exposition, "gc_placements_total", result="placed", reason="") == 1
    assert metric(exposition, "gc_mc_call_latency_seconds_count") == 1
    assert metric(exposition, "gc_sweeper_marks_total", kind="mc") == 0
    wait_until(
        lambda: metric(gc.metrics(), "gc_controllers", health="healthy") == 2,
        timeout=5,
        what="gc_controllers{health=healthy} == 2",
    )

    fleet.mcs["mc-b"].kill()

    def marked() -> bool:
        # One sweep counts the mark first and refreshes the gauges after: wait for both.
        exposition = gc.metrics()
        return (
            metric(exposition, "gc_sweeper_marks_total", kind="mc") == 1
            and metric(exposition, "gc_controllers", health="unhealthy") == 1
        )

    wait_until(marked, timeout=STALENESS_S + SWEEP_S + 4, what="mc-b's mark in the metrics")
    exposition = gc.metrics()
    assert metric(exposition, "gc_sweeper_marks_total", kind="mc") == 1
    assert metric(exposition, "gc_controllers", health="healthy") == 1
    assert gc.controllers()["mc-b"]["health"] == "unhealthy"
    assert gc.status("/health/live") == 200
    assert gc.status("/health/ready") == 200


def test_a_gc_that_cannot_reach_its_database_exits_2_without_the_password(
    fleet: Fleet,
) -> None:
    password = _password()
    closed = free_port()  # nothing listens there
    url = f"postgresql+asyncpg://darktower:{password}@127.0.0.1:{closed}/darktower"

    gc = fleet.start_gc(url, wait=False)
    code = gc.wait(timeout=30)

    output = gc.log()
    assert code == 2, output
    assert "database" in output.lower(), output
    assert password not in output
    assert gc.status("/health/live") is None


def test_a_running_gc_never_shows_its_database_password(
    fleet: Fleet, database_url: str, redis_db: redis.Redis
) -> None:
    base = postgres_base_url()
    if base is None:
        pytest.skip(
            "a database URL with a password needs PostgreSQL (trust auth accepts any "
            "password): set DARKTOWER_TEST_DATABASE_URL"
        )
    password = _password()
    parsed = make_url(database_url)
    url = parsed.set(password=password).render_as_string(hide_password=False)
    gc = fleet.up(url, mcs={"mc-a": {}}, mhs=MHS)
    answers: list[httpx.Response] = [
        gc.get(path)
        for path in ("/openapi.json", "/v1/controllers", "/v1/media-handlers", "/health/ready")
    ]
    answers.append(gc.join("secret-1"))
    answers.append(gc.join("a@b"))
    answers.append(gc.get("/v1/meetings/unknown-1"))
    assert [a.status_code for a in answers[-3:]] == [200, 400, 404]

    # The database fails under the running GC: the store's errors, the sweeper's failures
    # and the 503 body are where a URL would leak.
    sql_rows(base, f'DROP SCHEMA "{parsed.query["search_path"]}" CASCADE')
    broken = gc.join("secret-2")
    assert broken.status_code == 503 and broken.json()["reason"] == "database", broken.text
    answers.append(broken)
    wait_until(
        lambda: (metric(gc.metrics(), "gc_sweeps_total", result="failed") or 0) >= 1,
        timeout=5,
        what="a failed sweep",
    )
    answers.append(gc.get("/metrics"))
    gc.send_signal(signal.SIGTERM)
    assert gc.wait(timeout=20) == 0

    log = gc.log()
    assert "GC gc-1 stopped" in log  # the log is the whole run's
    for text in [log, *(a.text for a in answers)]:
        assert password not in text
