"""The GC's HTTP limits (`darktower.gc.limits`): the token buckets as a table, then the body
cap and the join rate limit on the real app served by uvicorn on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from darktower.auth.access_tokens import mint_access_token
from darktower.auth.api_keys import ApiKey, ApiKeyRing, generate_api_key, write_api_key_file
from darktower.gc.access import GcAccess
from darktower.gc.limits import HttpLimits, TokenBuckets, limits_from
from darktower.gc.settings import GcSettings
from tests.e2e.gc_app import gc_http_app, serve_app
from tests.support.http_abuse import OTHER_LOOPBACK, client_from, stream_body
from tests.support.metrics import sample

CAP = 64 * 1024


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# (rate, burst, [(advance_s, expected wait)]): one `take` per step after advancing the clock.
BUCKET_CASES = [
    pytest.param(1.0, 1, [(0, 0.0), (0, 1.0)], id="burst of one, then a second to wait"),
    pytest.param(2.0, 3, [(0, 0.0), (0, 0.0), (0, 0.0), (0, 0.5)], id="burst then refused"),
    pytest.param(2.0, 1, [(0, 0.0), (0.25, 0.25), (0.25, 0.0)], id="half a token refills"),
    pytest.param(1.0, 2, [(0, 0.0), (0, 0.0), (60, 0.0), (0, 0.0), (0, 1.0)], id="refill capped"),
    pytest.param(10.0, 1, [(0, 0.0)] + [(0, 0.1)] * 5, id="refusals cost nothing"),
]


@pytest.mark.parametrize(("rate", "burst", "steps"), BUCKET_CASES)
def test_token_bucket(rate: float, burst: int, steps: list[tuple[float, float]]) -> None:
    clock = FakeTime()
    buckets = TokenBuckets(rate=rate, burst=burst, max_keys=10, clock=clock)
    for advance, expected in steps:
        clock.now += advance
        assert buckets.take("k") == pytest.approx(expected)


def test_buckets_are_per_key_and_bounded() -> None:
    clock = FakeTime()
    buckets = TokenBuckets(rate=1.0, burst=1, max_keys=3, clock=clock)
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    assert buckets.take("b") == 0.0  # another key, its own bucket
    for key in ("c", "d", "e"):
        buckets.take(key)
    assert len(buckets) == 3  # "a" and "b", least recently used, were dropped
    assert buckets.take("a") == 0.0  # back as a new (full) bucket


def test_bucket_memory_stays_bounded_under_many_keys() -> None:
    buckets = TokenBuckets(rate=1.0, burst=5, max_keys=1000)
    for i in range(50_000):
        buckets.take(f"ip:10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    assert len(buckets) == 1000


def test_settings_defaults_are_the_limits_defaults() -> None:
    assert limits_from(GcSettings()) == HttpLimits()
    assert HttpLimits().max_body_bytes == CAP


@pytest.fixture
async def gc_url(tmp_path: Path) -> AsyncIterator[str]:
    """The GC's app with a small join budget per IP (3 at once, then one every 10 s)."""
    limits = HttpLimits(join_rate_per_ip=0.1, join_burst_per_ip=3)
    async with gc_http_app(tmp_path, limits=limits) as gc, serve_app(gc.app) as url:
        yield url


def _refused_bodies() -> float:
    return sample("gc_http_refusals_total", limit="body")


def _refusal_shape(body: bytes) -> dict[str, str]:
    answer = json.loads(body)
    assert set(answer) == {"error", "reason", "message"}
    return dict(answer)


@pytest.mark.parametrize(
    "path", ["/v1/meetings/m-1/join", "/v1/controllers", "/health/live", "/no/such/route"]
)
async def test_declared_oversized_body_is_refused_unread(gc_url: str, path: str) -> None:
    before = _refused_bodies()
    answer = await stream_body(
        gc_url, path, total=4 * 1024 * 1024, content_length=200 * 1024 * 1024
    )
    assert answer.status == 413
    assert "connection: close" in answer.head.lower()
    assert _refusal_shape(answer.body)["error"] == "payload_too_large"
    # Answered before the body was read: far less than the 4 MiB offered went out.
    assert answer.bytes_sent < 4 * 1024 * 1024
    assert _refused_bodies() == before + 1


async def test_chunked_body_is_cut_off_at_the_cap(gc_url: str) -> None:
    before = _refused_bodies()
    answer = await stream_body(gc_url, "/v1/meetings/m-1/join", total=50 * 1024 * 1024)
    assert answer.status == 413
    assert _refusal_shape(answer.body) == {
        "error": "payload_too_large",
        "reason": "body",
        "message": f"request bodies are limited to {CAP} bytes",
    }
    assert answer.bytes_sent < 50 * 1024 * 1024
    assert _refused_bodies() == before + 1


async def test_a_body_under_the_cap_is_read(gc_url: str) -> None:
    # Just under the cap, padded JSON: parsed (and refused for its content, not its size).
    body = json.dumps({"user_id": "alice", "display_name": "A", "pad": "x" * (CAP - 100)})
    assert len(body) <= CAP
    async with httpx.AsyncClient(base_url=gc_url, timeout=30) as client:
        answer = await client.post(
            "/v1/meetings/m-1/join", content=body, headers={"content-type": "application/json"}
        )
        over = await client.post(
            "/v1/meetings/m-2/join",
            content=body + " " * 200,
            headers={"content-type": "application/json"},
        )
    assert answer.status_code == 503  # no MH registered: placement ran
    assert answer.json()["reason"] == "no_media_handler"
    assert over.status_code == 413


async def test_join_flood_from_one_ip_is_429_and_another_ip_is_unaffected(gc_url: str) -> None:
    before = sample("gc_http_refusals_total", limit="join_ip")
    async with httpx.AsyncClient(base_url=gc_url, timeout=30) as flood:
        answers = await asyncio.gather(*(flood.post(f"/v1/meetings/m-{i}/join") for i in range(50)))
        other_routes = await flood.get("/v1/controllers")
    statuses = [a.status_code for a in answers]
    assert statuses.count(429) == 47, statuses  # the burst of 3 went through to placement
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["error"] == "rate_limited"
    assert refused.json()["reason"] == "join_ip"
    assert 1 <= int(refused.headers["retry-after"]) <= 10
    assert sample("gc_http_refusals_total", limit="join_ip") == before + 47
    assert other_routes.status_code == 200  # only joins are rate limited
    async with client_from(OTHER_LOOPBACK, gc_url) as other:
        answer = await other.post("/v1/meetings/m-other/join")
    assert answer.status_code == 503, answer.text  # placement ran (no MH here), not rate limited
    assert answer.json()["reason"] == "no_media_handler"


def test_openapi_documents_413_everywhere_and_429_on_join(tmp_path: Path) -> None:
    async def schema() -> dict[str, Any]:
        async with gc_http_app(tmp_path) as gc:
            return dict(gc.app.openapi()["paths"])

    paths = asyncio.run(schema())
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert "413" in operation["responses"], (method, path)
    join = paths["/v1/meetings/{meeting_id}/join"]["post"]
    assert "Retry-After" in join["responses"]["429"]["headers"]


async def test_joins_over_an_api_keys_budget_are_429_whatever_their_address(
    tmp_path: Path,
) -> None:
    busy, other = generate_api_key(), generate_api_key()
    for key in (busy, other):
        write_api_key_file(tmp_path / f"{key.key_id}.json", key)
    access = GcAccess(
        ApiKeyRing([tmp_path / f"{k.key_id}.json" for k in (busy, other)]), allow_guests=False
    )
    limits = HttpLimits(join_rate_per_api_key=0.1, join_burst_per_api_key=2)

    def bearer(key: ApiKey, n: int) -> dict[str, str]:
        token = mint_access_token(key, identity=f"u{n}", meeting_id=f"m-{n}")
        return {"authorization": f"Bearer {token}"}

    before = sample("gc_http_refusals_total", limit="join_api_key")
    async with gc_http_app(tmp_path, limits=limits, access=access) as gc, serve_app(gc.app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as here:
            first = [
                await here.post(f"/v1/meetings/m-{n}/join", headers=bearer(busy, n)) for n in (1, 2)
            ]
        async with client_from(OTHER_LOOPBACK, url) as there:
            third = await there.post("/v1/meetings/m-3/join", headers=bearer(busy, 3))
            other_key = await there.post("/v1/meetings/m-4/join", headers=bearer(other, 4))
            bad_token = await there.post(
                "/v1/meetings/m-5/join", headers={"authorization": "Bearer nope"}
            )
    assert [a.json()["reason"] for a in first] == ["no_media_handler"] * 2  # placement ran
    assert third.status_code == 429 and third.json()["reason"] == "join_api_key"
    assert int(third.headers["retry-after"]) >= 1
    assert other_key.json()["reason"] == "no_media_handler"  # another key, its own budget
    assert bad_token.status_code == 401  # no valid key: access refuses it, no key bucket
    assert sample("gc_http_refusals_total", limit="join_api_key") == before + 1
