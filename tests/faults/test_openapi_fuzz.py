"""Scenario 10 (HTTP): schemathesis fuzzes every operation of the GC's OpenAPI document.

A real GC runs in-process (SQLite, or PostgreSQL with `DARKTOWER_TEST_DATABASE_URL`) on an
event loop in a background thread, and schemathesis calls its live HTTP port with `requests`
from the test thread: that keeps schemathesis's sync pytest integration away from
pytest-asyncio's loops, and the servers' tasks away from the test's. The document is built at
import (`_document`), not fetched from a fixture: see there why, and
`test_the_live_document_is_the_one_fuzzed` for the check that it is the one the GC serves.

Two fleets, each fuzzed whole:

* `fleet`: one in-process MC (real Redis) registered with the GC and heartbeating, and one MH
  registered and reporting, guests allowed, so a join with a valid id is placed (200);
* `empty`: a GC with nobody registered, an API key and guests off (the production access
  model), so a join or an operator read without a valid access token is the documented 401,
  and a join with a valid token for a valid id the documented 503.

Checks (`CHECKS`): no 5xx, except a 503 from `POST /v1/meetings/{meeting_id}/join` that carries
the JSON error body `{error, reason, message}`; every response's status code and body conform to
the document.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
import httpx
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from darktower.auth.access_tokens import mint_access_token
from darktower.auth.api_keys import (
    ApiKey,
    ApiKeyRing,
    generate_api_key,
    load_api_key_file,
    write_api_key_file,
)
from darktower.auth.client import ServiceTokenProvider
from darktower.auth.keys import generate_key_files, load_private_key
from darktower.auth.tokens import GC_AUDIENCE, SERVICE_PROFILES
from darktower.embedded.redis import free_port
from darktower.gc.access import GcAccess
from darktower.gc.drain_api import mount_drain_api
from darktower.gc.http import ErrorOut, create_app
from darktower.gc.join import PlacementService
from darktower.gc.jwks_route import mount_jwks
from darktower.gc.mc_client import McClient
from darktower.gc.server import GcApp
from darktower.gc.settings import GcSettings
from darktower.gc.store import GcStore
from darktower.gc.webhooks_route import mount_webhooks_status
from darktower.mc.settings import McSettings
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc
from tests.faults.inprocess import (
    BackgroundLoop,
    Database,
    create_database,
    drop_database,
    make_mc,
)

JOIN_OPERATION = ("POST", "/v1/meetings/{meeting_id}/join")
ERROR_FIELDS = {"error", "reason", "message"}
READY_TIMEOUT_SECONDS = 15.0

_T = TypeVar("_T")


def no_server_error_but_documented_503(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    """No 5xx, except the join's 503 (no MC or MH available) with its JSON error body."""
    status = response.status_code
    if status < 500:
        return None
    operation = (case.operation.method.upper(), case.operation.path)
    assert status == 503 and operation == JOIN_OPERATION, (
        f"{case.operation.label} answered {status}: {response.content[:300]!r}"
    )
    body = response.json()
    assert isinstance(body, dict) and set(body) == ERROR_FIELDS, body
    assert all(isinstance(body[k], str) and body[k] for k in ERROR_FIELDS), body
    assert body["error"] == "unavailable", body
    return None


CHECKS = [
    no_server_error_but_documented_503,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _register_mh(gc_grpc_port: int, key_dir: Path) -> None:
    """One MH in the GC's region, registered and reporting HEALTHY (as the MH simulator would)."""
    # Since identity binding (issue 13) an MH token names the MH (`sub`) and the GC (`aud`).
    service_type, scope = SERVICE_PROFILES["mh"]
    metadata = ServiceTokenProvider(
        load_private_key(key_dir / "mh.key"),
        service_type=service_type,
        scope=scope,
        issuer="mh-fuzz",
        subject="mh-fuzz",
        audience=GC_AUDIENCE,
    ).metadata()
    with grpc.insecure_channel(f"127.0.0.1:{gc_grpc_port}") as channel:
        stub = pb_grpc.MediaHandlerRegistryServiceStub(channel)
        stub.RegisterMH(
            pb.RegisterMHRequest(
                handler_id="mh-fuzz",
                region="test",
                webtransport_endpoint="https://mh-fuzz.example:4433",
                grpc_endpoint="http://127.0.0.1:1",
                max_streams=1_000_000,
                zone="z1",
            ),
            metadata=metadata,
            timeout=10,
        )
        stub.SendLoadReport(
            pb.MHLoadReportRequest(handler_id="mh-fuzz", current_streams=0, health=pb.HEALTHY),
            metadata=metadata,
            timeout=10,
        )


def _wait_for_healthy_mc(http_url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        controllers = httpx.get(f"{http_url}/v1/controllers", timeout=5).json()
        if any(c["health"] == "healthy" for c in controllers):
            return
        time.sleep(0.05)
    raise AssertionError(f"no healthy MC within {READY_TIMEOUT_SECONDS}s")


@dataclass
class RunningGc:
    http_url: str
    grpc_port: int
    api_key: ApiKey


@pytest.fixture(scope="module")
def loop() -> Iterator[BackgroundLoop]:
    with BackgroundLoop() as running:
        yield running


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("faults-openapi-keys")
    generate_key_files(out)
    write_api_key_file(out / "api-key.json", generate_api_key())
    return out


@pytest.fixture(scope="module")
def start_gc(
    loop: BackgroundLoop, key_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., RunningGc]]:
    """Start GCs on fresh databases; all stopped (and their schemas dropped) afterwards."""
    started: list[tuple[GcApp, Database]] = []

    def start(name: str, *, allow_guests: bool = False) -> RunningGc:
        database = loop.run(create_database(tmp_path_factory.mktemp(f"gc-{name}")))
        gc = GcApp(
            GcSettings(
                id=f"gc-{name}",
                region="test",
                grpc_bind="127.0.0.1:0",
                http_bind="127.0.0.1:0",
                database_url=database.url,
                service_key_file=key_dir / "gc.key",
                trusted_mc_key_files=[key_dir / "mc.pub"],
                trusted_mh_key_files=[key_dir / "mh.pub"],
                fast_heartbeat_ms=200,
                # The one MH reports once (`_register_mh`): it must not go stale while the
                # module runs, however slow the machine (the default is 30 s).
                staleness_seconds=3600,
                mc_call_timeout_seconds=5,
                api_key_files=[key_dir / "api-key.json"],
                allow_guests=allow_guests,
                allow_unbound_keys=True,  # the legacy key trio (`key_dir`)
            )
        )
        started.append((gc, database))
        loop.run(gc.start())
        api_key = load_api_key_file(key_dir / "api-key.json")
        return RunningGc(f"http://127.0.0.1:{gc.http_port}", gc.grpc_port, api_key)

    yield start
    for gc, database in started:
        loop.run(gc.stop())
        loop.run(drop_database(database))


@pytest.fixture(scope="module")
def fleet(
    loop: BackgroundLoop,
    start_gc: Callable[..., RunningGc],
    key_dir: Path,
    redis_url: str,
) -> Iterator[RunningGc]:
    """A GC with one healthy MC and one healthy MH, guests allowed: valid joins are placed."""
    gc = start_gc("fleet", allow_guests=True)
    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()
    mc = loop.run(
        make_mc(
            McSettings(
                id="mc-fuzz",
                region="test",
                grpc_bind="127.0.0.1:0",
                health_bind=f"127.0.0.1:{free_port()}",
                redis_url=redis_url,
                client_enabled=False,  # client signaling is not what this fuzzes
                gc_endpoint=f"http://127.0.0.1:{gc.grpc_port}",
                service_key_file=key_dir / "mc.key",
                trusted_gc_key_files=[key_dir / "gc.pub"],
                max_meetings=100_000,
                max_participants=10_000_000,
                drain_seconds=3,
                allow_unbound_keys=True,
                meeting_touch_seconds=60,
            )
        )
    )
    loop.run(mc.start())
    try:
        _register_mh(gc.grpc_port, key_dir)
        _wait_for_healthy_mc(gc.http_url)
        yield gc
    finally:
        loop.run(mc.stop(deadline_seconds=3))
        with redis.Redis.from_url(redis_url) as client:
            client.flushdb()


@pytest.fixture(scope="module")
def empty(start_gc: Callable[..., RunningGc]) -> RunningGc:
    """A GC nobody registered with, guests off: joins need a token, then get the documented
    503."""
    return start_gc("empty")


@pytest.fixture(scope="module", params=["fleet", "empty"])
def gc_under_test(request: pytest.FixtureRequest) -> RunningGc:
    running: RunningGc = request.getfixturevalue(request.param)
    return running


def _document() -> dict[str, Any]:
    """The GC's OpenAPI document, built as the GC builds it.

    schemathesis needs the document when the module is imported, before any GC runs: its lazy
    loader (`schemathesis.pytest.from_fixture`) fails on pytest 9.2 (it writes `Node._nodeid`,
    which pytest no longer has). Only the routes make the document, no handler runs, so the
    app is built without a store or placement; `test_the_live_document_is_the_one_fuzzed`
    checks that a running GC serves exactly this document.
    """
    app = create_app(
        cast(GcStore, None),
        cast(PlacementService, None),
        region="test",
        is_ready=_never_ready,
        access=GcAccess(ApiKeyRing(), allow_guests=False),
    )
    # As `GcApp` does: the routes are in the document, no key, MC client or webhook is used.
    mount_jwks(app, list)
    mount_drain_api(
        app,
        store=cast(GcStore, None),
        mc_client=cast(McClient, None),
        access=GcAccess(ApiKeyRing(), allow_guests=False),
        error_model=ErrorOut,
    )
    mount_webhooks_status(app, None, GcAccess(ApiKeyRing(), allow_guests=False))
    return app.openapi()


async def _never_ready() -> tuple[bool, str]:
    return False, "not running"


DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(DOCUMENT)

FUZZ = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@schema.parametrize()
@FUZZ
def test_gc_http_api(case: schemathesis.Case[Any], gc_under_test: RunningGc) -> None:
    case.call_and_validate(base_url=gc_under_test.http_url, checks=CHECKS, timeout=15)


def test_the_live_document_is_the_one_fuzzed(gc_under_test: RunningGc) -> None:
    live = httpx.get(f"{gc_under_test.http_url}/openapi.json", timeout=5)
    assert live.status_code == 200
    assert live.json() == DOCUMENT


def test_both_join_outcomes_happen(fleet: RunningGc, empty: RunningGc) -> None:
    """The two join outcomes the checks tell apart really happen: a valid join is placed on
    the fleet, and answered 503 with the error body by the empty GC."""
    placed = httpx.post(f"{fleet.http_url}/v1/meetings/checks-ok/join", timeout=15)
    assert placed.status_code == 200, placed.text
    assert placed.json()["mc_id"] == "mc-fuzz"
    token = mint_access_token(empty.api_key, identity="ada", meeting_id="checks-503")
    refused = httpx.post(
        f"{empty.http_url}/v1/meetings/checks-503/join",
        headers={"Authorization": f"Bearer {token}"},
        timeout=15,
    )
    assert refused.status_code == 503
    assert set(refused.json()) == ERROR_FIELDS


@pytest.mark.parametrize(
    "path", ["/v1/controllers", "/v1/media-handlers", "/v1/meetings", "/v1/placements/recent"]
)
def test_operator_reads_need_an_admin_token_when_guests_are_off(
    empty: RunningGc, path: str
) -> None:
    """The fuzzed `empty` GC runs the production access model: its operator reads answer the
    documented 401 without a token, 403 with a participant's, 200 with an admin's."""
    url = f"{empty.http_url}{path}"
    participant = mint_access_token(empty.api_key, identity="ada", meeting_id="m-1")
    admin = mint_access_token(empty.api_key, identity="ops", meeting_id=None, admin=True)
    missing = httpx.get(url, timeout=15)
    assert (missing.status_code, missing.json()["reason"]) == (401, "token_missing")
    assert set(missing.json()) == ERROR_FIELDS
    denied = httpx.get(url, headers={"Authorization": f"Bearer {participant}"}, timeout=15)
    assert (denied.status_code, denied.json()["reason"]) == (403, "admin_required")
    allowed = httpx.get(url, headers={"Authorization": f"Bearer {admin}"}, timeout=15)
    assert allowed.status_code == 200, allowed.text


def test_metrics_are_documented_as_text() -> None:
    content = DOCUMENT["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert any(kind.startswith("text/plain") for kind in content)


def test_an_unparseable_join_body_gets_the_documented_error(empty: RunningGc) -> None:
    answer = httpx.post(
        f"{empty.http_url}/v1/meetings/m-1/join",
        content=b"\xff",
        headers={"Content-Type": "application/json"},
        timeout=15,
    )
    assert answer.status_code == 400
    assert set(answer.json()) == ERROR_FIELDS
