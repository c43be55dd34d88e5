"""The join page in a real browser (Debian's chromium, driven by Playwright) tells the GC about an
MC it cannot reach (`unreachable_mc_id`, issue 16 "Crashes"), on a real fleet in the test's loop
(`tests.client.in_process_fleet`: a GC, two MCs, a simulated MH, the test Redis).

The GC's registry holds a third MC, `mc-ghost`, healthy and fresh, hosting the meeting, whose
endpoints nobody listens on (a crashed MC the GC cannot have noticed yet: staleness 60 s). The
page is sent there, its WebSocket connect is refused, it asks the GC again at once naming
`mc-ghost`; the GC's own check finds it down, marks it unhealthy and places the meeting on a
real MC, where the page joins.

Without `/usr/bin/chromium` (`scripts/install-browser.sh`) this test is skipped and says why.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from playwright.async_api import Page, ViewportSize, expect
from prometheus_client import REGISTRY

from darktower.common.clock import utcnow
from darktower.embedded.redis import free_port
from darktower.gc.domain import Health, Heartbeat
from tests.client import REGION, InProcessFleet, in_process_fleet
from tests.e2e.browser import requires_chromium

PAGE_WAIT_MS = 20_000

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120), requires_chromium]


@pytest.fixture
def viewport() -> ViewportSize:
    return {"width": 1000, "height": 800}


@pytest.fixture
async def fleet(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> AsyncIterator[InProcessFleet]:
    # The default-like staleness: only evidence can move the meeting within the test.
    async with in_process_fleet(
        tmp_path, redis_url, mcs=2, gc_overrides={"staleness_seconds": 60.0}
    ) as started:
        yield started


async def _host_on_a_ghost(fleet: InProcessFleet, meeting_id: str) -> None:
    """`meeting_id` live on `mc-ghost`: registered, HEALTHY, fresh, and not listening."""
    store = fleet.gc.store
    assert store is not None
    now = utcnow()
    await store.upsert_controller(
        "mc-ghost",
        REGION,
        f"http://127.0.0.1:{free_port()}",
        f"http://127.0.0.1:{free_port()}",
        100,
        10_000,
        now,
    )
    await store.record_heartbeat(
        Heartbeat(
            "mc-ghost",
            current_meetings=1,
            current_participants=0,
            max_meetings=100,
            max_participants=10_000,
            health=Health.HEALTHY,
            at=now,
        )
    )
    claim = await store.claim_meeting(
        meeting_id, REGION, "gc-test", now, stale_claim_after=timedelta(seconds=30)
    )
    assert claim.won
    await store.activate_assignment(meeting_id, REGION, "gc-test", "mc-ghost", ["mh-1"], now)


def _marks() -> float:
    return REGISTRY.get_sample_value("gc_evidence_marks_total") or 0.0


async def test_the_page_names_an_mc_it_cannot_reach_and_lands_on_a_live_one(
    fleet: InProcessFleet, page: Page
) -> None:
    await _host_on_a_ghost(fleet, "haunted")
    bodies: list[dict[str, object]] = []
    page.on(
        "request",
        lambda r: (
            bodies.append(json.loads(r.post_data or "{}"))
            if r.method == "POST" and r.url.endswith("/join")
            else None
        ),
    )
    marks = _marks()

    await page.goto(fleet.gc_url + "/join?meeting=haunted&name=Ada&autojoin=1")
    await expect(page.locator("#status")).to_have_attribute(
        "data-state", "joined", timeout=PAGE_WAIT_MS
    )

    assert [b.get("unreachable_mc_id") for b in bodies] == [None, "mc-ghost"]
    assert _marks() == marks + 1
    store = fleet.gc.store
    assert store is not None
    ghost = await store.get_controller("mc-ghost")
    assert ghost is not None and ghost.health is Health.UNHEALTHY
    live = await store.active_assignment("haunted", REGION)
    assert live is not None and live.mc_id in {"mc-1", "mc-2"}
    await expect(page.locator("#roster li[data-participant-id]")).to_have_count(1)
