"""The operator dashboard in a real browser (Debian's chromium, driven by Playwright).

* Against a real local fleet (`darktower.dev.fleet.Fleet`: embedded Redis, a GC, 2 MCs, 2
  simulated MHs): both MCs show healthy, a join shows up in the placements and in the MC's
  meeting count, and an MC killed with SIGKILL turns unhealthy on the page once the GC's
  staleness sweep (6 s, swept every second) has seen it.
* Against a synthetic API of 200 MCs served by uvicorn with the same dashboard mounted: the
  summary line, one compact row per MC sorted worst health first, a sticky header, strings
  from the API shown as text, and the error banner while the API does not answer.

Playwright's own browser download is never used: `scripts/install-browser.sh` installs
`/usr/bin/chromium` (CI runs it); without that binary these tests are skipped, and say why.
Screenshots of both pages land in the test's `tmp_path`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, HTTPException
from playwright.async_api import Locator, Page, expect

from darktower.dev.fleet import Fleet, FleetPorts
from darktower.embedded.redis import free_port
from darktower.gc.dashboard import mount_dashboard
from darktower.serving import EmbeddedUvicorn
from tests.e2e.browser import requires_chromium

# The fleet's GC marks an MC unhealthy 6 s after its last heartbeat, sweeping every second;
# the page polls every 1.5 s. 15 s leaves room for a slow machine and stays bounded.
UNHEALTHY_WITHIN_MS = 15_000
PAGE_WAIT_MS = 15_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    requires_chromium,
]


@pytest.fixture
def dev_fleet() -> Iterator[Fleet]:
    fleet = Fleet(mcs=2, mhs=2, ports=FleetPorts(any_free=True))
    try:
        fleet.start()
        yield fleet
    finally:
        fleet.stop()


def _row(page: Page, mc_id: str) -> Locator:
    return page.locator(f'#mc-rows tr[data-mc-id="{mc_id}"]')


async def test_the_dashboard_follows_a_real_fleet(
    dev_fleet: Fleet, page: Page, tmp_path: Path
) -> None:
    await page.goto(dev_fleet.gc_url + "/")
    await expect(page).to_have_title("darktower fleet")
    for mc_id in ("mc-1", "mc-2"):
        await expect(_row(page, mc_id)).to_have_attribute(
            "data-health", "healthy", timeout=PAGE_WAIT_MS
        )
    await expect(page.locator("#mc-rows tr")).to_have_count(2)
    await expect(page.locator("#mh-rows tr")).to_have_count(2, timeout=PAGE_WAIT_MS)
    await expect(page.locator("#summary")).to_contain_text("2 MCs: 2 healthy")
    await expect(page.locator("#error-banner")).to_be_hidden()
    await expect(page.locator("#last-refresh")).to_have_text(re.compile(r"updated \d\d:\d\d:\d\d"))

    async with httpx.AsyncClient(base_url=dev_fleet.gc_url, timeout=30) as api:
        joined = await api.post("/v1/meetings/standup/join")
    assert joined.status_code == 200, joined.text
    host = joined.json()["mc_id"]
    placed = page.locator('#placements li[data-meeting-id="standup"]')
    await expect(placed).to_have_attribute("data-outcome", "accepted", timeout=PAGE_WAIT_MS)
    await expect(placed).to_have_attribute("data-mc-id", host)
    # The count arrives with the MC's next heartbeat (every 2 s in the dev fleet).
    await expect(_row(page, host)).to_have_attribute("data-meetings", "1", timeout=PAGE_WAIT_MS)
    await expect(_row(page, host).locator('[data-field="meetings"]')).to_contain_text("1 / ")

    victim = next(s for s in dev_fleet.services if s.kind == "mc" and s.name == host)
    os.killpg(victim.process.pid, signal.SIGKILL)
    await asyncio.to_thread(victim.process.wait, 10)
    await expect(_row(page, host)).to_have_attribute(
        "data-health", "unhealthy", timeout=UNHEALTHY_WITHIN_MS
    )
    await expect(_row(page, host).locator(".badge")).to_have_text("unhealthy")
    # Unhealthy sorts first; the survivor stays healthy.
    await expect(page.locator("#mc-rows tr").first).to_have_attribute("data-mc-id", host)
    survivor = "mc-2" if host == "mc-1" else "mc-1"
    await expect(_row(page, survivor)).to_have_attribute("data-health", "healthy")
    await expect(page.locator("#summary")).to_contain_text(
        "2 MCs: 1 healthy, 0 degraded, 1 unhealthy"
    )

    await page.screenshot(path=tmp_path / "dashboard-fleet.png", full_page=True)


# --- 200 synthetic MCs ---------------------------------------------------------------------

HEALTH_MIX = {"healthy": 180, "degraded": 8, "unhealthy": 5, "draining": 4, "pending": 3}
HEALTH_RANK = {"unhealthy": 0, "degraded": 1, "draining": 2, "pending": 3, "healthy": 4}
HOSTILE_REGION = '<img src=x onerror="window.pwned=1">'


@dataclass
class SyntheticApi:
    """What the synthetic GC answers; `down` makes every API call fail with 503."""

    controllers: list[dict[str, Any]]
    handlers: list[dict[str, Any]]
    placements: list[dict[str, Any]]
    down: bool = False
    app: FastAPI = field(init=False)

    def __post_init__(self) -> None:
        self.app = FastAPI()

        def answer(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if self.down:
                raise HTTPException(503, "synthetic outage")
            return rows

        @self.app.get("/v1/controllers")
        async def controllers() -> list[dict[str, Any]]:
            return answer(self.controllers)

        @self.app.get("/v1/media-handlers")
        async def handlers() -> list[dict[str, Any]]:
            return answer(self.handlers)

        @self.app.get("/v1/placements/recent")
        async def placements() -> list[dict[str, Any]]:
            return answer(self.placements)

        mount_dashboard(self.app)


def _synthetic() -> SyntheticApi:
    rng = random.Random(5)  # fixed: the screenshot and the totals are reproducible
    healths = [h for h, n in HEALTH_MIX.items() for _ in range(n)]
    rng.shuffle(healths)
    now = datetime.now(UTC)
    controllers = []
    for i, health in enumerate(healths, start=1):
        meetings = rng.randrange(0, 1001)
        controllers.append(
            {
                "id": f"mc-{i:03d}",
                "region": HOSTILE_REGION if i == 7 else ("eu-west" if i % 2 else "us-east"),
                "health": health,
                "grpc_endpoint": f"http://10.0.{i // 250}.{i % 250}:50052",
                "webtransport_endpoint": None,
                "max_meetings": 1000,
                "current_meetings": meetings,
                "max_participants": 10000,
                "current_participants": meetings * rng.randrange(2, 11),
                "cpu_percent": rng.uniform(3, 95),
                "memory_percent": rng.uniform(10, 80),
                "last_heartbeat_at": (now - timedelta(seconds=2)).isoformat(),
                "heartbeat_age_s": 45.0 if health == "unhealthy" else rng.uniform(0.1, 2.5),
            }
        )
    handlers = [
        {
            "id": f"mh-{i}",
            "region": "eu-west",
            "zone": f"zone-{'ab'[i % 2]}",
            "health": "degraded" if i == 4 else "healthy",
            "webtransport_endpoint": f"https://mh-{i}.example:4433",
            "max_streams": 500,
            "current_streams": 50 * i,
            "last_report_at": now.isoformat(),
        }
        for i in range(1, 7)
    ]
    outcomes = ["accepted", "at_capacity", "accepted", "no_media_handler", "reused", "timeout"]
    placements = [
        {
            "at": (now - timedelta(seconds=10 * k)).isoformat(),
            "meeting_id": f"meeting-{k}",
            "mc_id": None if outcome == "no_media_handler" else f"mc-{k + 1:03d}",
            "outcome": outcome,
            "detail": "no healthy media handler" if outcome == "no_media_handler" else "",
        }
        for k, outcome in enumerate(outcomes)
    ]
    # Out of order on purpose: the page sorts newest first.
    placements.reverse()
    return SyntheticApi(controllers, handlers, placements)


@contextlib.asynccontextmanager
async def _serve(app: FastAPI) -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = EmbeddedUvicorn(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def _summary(controllers: list[dict[str, Any]]) -> str:
    counts = {h: sum(1 for c in controllers if c["health"] == h) for h in HEALTH_MIX}
    meetings = sum(c["current_meetings"] for c in controllers)
    participants = sum(c["current_participants"] for c in controllers)
    return (
        f"{len(controllers)} MCs: {counts['healthy']} healthy, {counts['degraded']} degraded, "
        f"{counts['unhealthy']} unhealthy, {counts['draining']} draining, "
        f"{counts['pending']} pending; meetings {meetings:,}/{1000 * len(controllers):,}; "
        f"participants {participants:,}/{10000 * len(controllers):,}"
    )


async def test_two_hundred_mcs_stay_readable(page: Page, tmp_path: Path) -> None:
    api = _synthetic()
    async with _serve(api.app) as url:
        await page.goto(url + "/")
        rows = page.locator("#mc-rows tr")
        await expect(rows).to_have_count(200, timeout=PAGE_WAIT_MS)
        await expect(page.locator("#summary")).to_have_text(_summary(api.controllers))

        # Worst health first, then by id.
        shown = await rows.evaluate_all("rows => rows.map(r => [r.dataset.health, r.dataset.mcId])")
        expected = sorted(
            ((c["health"], c["id"]) for c in api.controllers),
            key=lambda hc: (HEALTH_RANK[hc[0]], hc[1]),
        )
        assert [tuple(x) for x in shown] == expected

        # Compact: one light row per MC.
        elements = await page.locator("#mc-rows").evaluate("b => b.querySelectorAll('*').length")
        assert elements <= 200 * 20, elements

        # API strings are text, never markup.
        hostile = _row(page, "mc-007").locator("td.region")
        await expect(hostile).to_have_text(HOSTILE_REGION)
        assert await page.locator("#mcs img").count() == 0
        assert await page.evaluate("window.pwned") is None

        # Placements newest first, refusals with their reason.
        order = await page.locator("#placements li").evaluate_all(
            "items => items.map(i => i.dataset.meetingId)"
        )
        assert order == [f"meeting-{k}" for k in range(6)]
        refusal = page.locator('#placements li[data-meeting-id="meeting-3"]')
        await expect(refusal).to_have_attribute("data-outcome", "no_media_handler")
        await expect(refusal).to_contain_text("no healthy media handler")
        await expect(page.locator("#mh-rows tr")).to_have_count(6)

        # The header stays in view when the table scrolls.
        scroller = page.locator("#mc-section .scroll")
        await scroller.evaluate("s => { s.scrollTop = 2000; }")
        gap = await scroller.evaluate(
            "s => s.querySelector('thead th').getBoundingClientRect().top"
            " - s.getBoundingClientRect().top"
        )
        assert abs(gap) < 2, gap
        await scroller.evaluate("s => { s.scrollTop = 0; }")
        await page.screenshot(path=tmp_path / "dashboard-200.png")

        # The GC stops answering: a banner says so; it goes away once the GC is back.
        api.down = True
        banner = page.locator("#error-banner")
        await expect(banner).to_be_visible(timeout=PAGE_WAIT_MS)
        await expect(banner).to_contain_text("does not answer")
        await expect(page.locator("#refresh")).to_have_attribute("data-state", "error")
        await expect(rows).to_have_count(200)  # the last data stays on screen
        await page.screenshot(path=tmp_path / "dashboard-200-down.png")
        api.down = False
        await expect(banner).to_be_hidden(timeout=PAGE_WAIT_MS)
        await expect(page.locator("#refresh")).to_have_attribute("data-state", "ok")
