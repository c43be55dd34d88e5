"""The operator dashboard in a real browser (Debian's chromium, driven by Playwright).

* Against a real local fleet (`darktower.dev.fleet.Fleet`: embedded Redis, a GC, 2 MCs, 2
  simulated MHs): both MCs show healthy, a join shows up in the placements and in the MC's
  meeting count, and an MC killed with SIGKILL turns unhealthy on the page once the GC's
  staleness sweep (6 s, swept every second) has seen it — its whole row marked, and the
  header's totals no longer counting its last meetings or its capacity; joined again, the
  meeting reads "standup moved from mc-1 to mc-2 (mc-1 unhealthy)" in the placements.
* Against a synthetic API of 200 MCs served by uvicorn with the same dashboard mounted: the
  summary line (totals over healthy and degraded MCs only), one compact row per MC sorted
  worst health first, unhealthy rows marked whole, bar counts legible over every fill level,
  moves folded into one line, a sticky header, strings from the API shown as text, and the
  error banner while the API does not answer.

Playwright's own browser download is never used: `scripts/install-browser.sh` installs
`/usr/bin/chromium` (CI runs it); without that binary these tests are skipped, and say why.
Screenshots of both pages land in the test's `tmp_path`.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from playwright.async_api import Locator, Page, expect

from darktower.dev.fleet import Fleet, FleetPorts
from darktower.gc.dashboard import mount_dashboard
from tests.e2e.browser import requires_chromium
from tests.e2e.gc_app import serve_app

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
    summary = page.locator("#summary")
    await expect(summary).to_contain_text("2 MCs: 1 healthy, 0 degraded, 1 unhealthy")
    # The dead MC still reports its last meeting; the whole row says it is not to be trusted.
    await expect(_row(page, host)).to_have_attribute("data-meetings", "1")
    await _expect_row_marked(_row(page, host))
    await _expect_row_unmarked(_row(page, survivor))

    # Joined again: another MC takes the meeting, and the placements say where from and why.
    async with httpx.AsyncClient(base_url=dev_fleet.gc_url, timeout=30) as api:
        moved = await api.post("/v1/meetings/standup/join")
        assert moved.status_code == 200, moved.text
        assert moved.json()["mc_id"] == survivor
        events = (await api.get("/v1/placements/recent")).json()
        survivor_max = next(
            c["max_meetings"]
            for c in (await api.get("/v1/controllers")).json()
            if c["id"] == survivor
        )
    assert [(e["outcome"], e["mc_id"], e["previous_mc_id"], e["move_reason"]) for e in events][
        :2
    ] == [("accepted", survivor, host, "unhealthy"), ("moved", host, host, "unhealthy")]
    move = page.locator('#placements li[data-meeting-id="standup"][data-outcome="moved"]')
    await expect(move).to_have_count(1, timeout=PAGE_WAIT_MS)  # one line for the move
    await expect(move).to_have_attribute("data-mc-id", survivor)
    await expect(move).to_have_attribute("data-previous-mc-id", host)
    await expect(move.locator(".line")).to_have_text(
        f"standup moved from {host} to {survivor} ({host} unhealthy)"
    )

    # Totals: the survivor's meeting against the survivor's limit only. Counting the dead MC
    # (its last report: 1 meeting) would read 2 meetings against twice the limit.
    await expect(_row(page, survivor)).to_have_attribute("data-meetings", "1", timeout=PAGE_WAIT_MS)
    await expect(summary).to_have_attribute("data-live", "1")
    await expect(summary).to_have_attribute("data-meetings", "1")
    await expect(summary).to_have_attribute("data-max-meetings", str(survivor_max))
    await expect(summary).to_contain_text(
        f"live MCs (healthy + degraded): meetings 1/{survivor_max:,}"
    )

    await page.screenshot(path=tmp_path / "dashboard-fleet.png", full_page=True)


UNHEALTHY_ROW_BACKGROUND = "rgb(255, 235, 233)"  # --row-unhealthy in dashboard.css


async def _cell_backgrounds(row: Locator) -> list[str]:
    backgrounds: list[str] = await row.locator("td").evaluate_all(
        "cells => cells.map(c => getComputedStyle(c).backgroundColor)"
    )
    return backgrounds


async def _expect_row_marked(row: Locator) -> None:
    """Every cell of the row carries the unhealthy tint, the first its red edge."""
    backgrounds = await _cell_backgrounds(row)
    assert len(backgrounds) >= 5 and set(backgrounds) == {UNHEALTHY_ROW_BACKGROUND}, backgrounds
    edge = await row.locator("td").first.evaluate("c => getComputedStyle(c).boxShadow")
    assert "207, 34, 46" in edge, edge


async def _expect_row_unmarked(row: Locator) -> None:
    assert UNHEALTHY_ROW_BACKGROUND not in await _cell_backgrounds(row)


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
            "current_streams": 80 * i,  # 16 % … 96 %: every fill level
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
    # A meeting moved off an unhealthy MC (the GC logs "moved", then the "accepted" naming
    # the MC it left), and one that left a draining MC and is not placed yet.
    placements += [
        {
            "at": (now - timedelta(seconds=62)).isoformat(),
            "meeting_id": "standup",
            "mc_id": "mc-009",
            "outcome": "moved",
            "detail": "previous MC unhealthy",
            "previous_mc_id": "mc-009",
            "move_reason": "unhealthy",
        },
        {
            "at": (now - timedelta(seconds=61)).isoformat(),
            "meeting_id": "standup",
            "mc_id": "mc-010",
            "outcome": "accepted",
            "detail": "",
            "previous_mc_id": "mc-009",
            "move_reason": "unhealthy",
        },
        {
            "at": (now - timedelta(seconds=70)).isoformat(),
            "meeting_id": "retro",
            "mc_id": "mc-011",
            "outcome": "moved",
            "detail": "previous MC draining",
            "previous_mc_id": "mc-011",
            "move_reason": "draining",
        },
    ]
    # Out of order on purpose: the page sorts newest first.
    placements.reverse()
    return SyntheticApi(controllers, handlers, placements)


def _summary(controllers: list[dict[str, Any]]) -> str:
    """The header line: counts of every health; totals of the live (placeable) MCs only."""
    counts = {h: sum(1 for c in controllers if c["health"] == h) for h in HEALTH_MIX}
    live = [c for c in controllers if c["health"] in ("healthy", "degraded")]
    meetings = sum(c["current_meetings"] for c in live)
    participants = sum(c["current_participants"] for c in live)
    return (
        f"{len(controllers)} MCs: {counts['healthy']} healthy, {counts['degraded']} degraded, "
        f"{counts['unhealthy']} unhealthy, {counts['draining']} draining, "
        f"{counts['pending']} pending; live MCs (healthy + degraded): "
        f"meetings {meetings:,}/{1000 * len(live):,}, "
        f"participants {participants:,}/{10000 * len(live):,}"
    )


def _luminance(rgb: tuple[int, int, int]) -> float:
    def channel(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _rgb(colour: str) -> tuple[int, int, int]:
    r, g, b = (int(x) for x in re.findall(r"\d+", colour)[:3])
    return r, g, b


def _contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two computed CSS colours (`rgb(r, g, b)`)."""
    la, lb = (_luminance(_rgb(c)) for c in (a, b))
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


async def _bar_colours(rows: Locator) -> list[dict[str, Any]]:
    """For each bar in `rows`: its level, the label's colour, the fill's and the track's,
    and whether the label's text fits unclipped."""
    bars: list[dict[str, Any]] = await rows.locator(".bar").evaluate_all(
        """bars => bars.map(b => {
            const label = b.querySelector('.bar-label');
            return {
                level: b.dataset.level,
                text: label.textContent,
                ink: getComputedStyle(label).color,
                fill: getComputedStyle(b.querySelector('.fill')).backgroundColor,
                track: getComputedStyle(b).backgroundColor,
                fits: label.scrollWidth <= b.clientWidth,
            };
        })"""
    )
    return bars


def _assert_legible(bars: list[dict[str, Any]]) -> None:
    assert {b["level"] for b in bars} == {"ok", "warn", "high"}, bars
    for b in bars:
        # WCAG AA asks 4.5:1 for small text; the label sits over the fill and over the track.
        assert _contrast(b["ink"], b["fill"]) >= 7, b
        assert _contrast(b["ink"], b["track"]) >= 7, b
        assert b["fits"], b


async def test_two_hundred_mcs_stay_readable(page: Page, tmp_path: Path) -> None:
    api = _synthetic()
    async with serve_app(api.app) as url:
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
        assert order == [*(f"meeting-{k}" for k in range(6)), "standup", "retro"]
        refusal = page.locator('#placements li[data-meeting-id="meeting-3"]')
        await expect(refusal).to_have_attribute("data-outcome", "no_media_handler")
        await expect(refusal).to_contain_text("no healthy media handler")

        # A move is one line: where from, where to, and why.
        moved = page.locator('#placements li[data-meeting-id="standup"]')
        await expect(moved).to_have_count(1)
        await expect(moved).to_have_attribute("data-outcome", "moved")
        await expect(moved).to_have_attribute("data-mc-id", "mc-010")
        await expect(moved).to_have_attribute("data-previous-mc-id", "mc-009")
        await expect(moved).to_have_attribute("data-move-reason", "unhealthy")
        await expect(moved.locator(".line")).to_have_text(
            "standup moved from mc-009 to mc-010 (mc-009 unhealthy)"
        )
        await expect(moved.locator(".outcome")).to_have_text("moved")
        pending = page.locator('#placements li[data-meeting-id="retro"]')
        await expect(pending.locator(".line")).to_have_text("retro left mc-011 (mc-011 draining)")
        await expect(pending).to_have_attribute("data-outcome", "moved")

        # An unhealthy MC's whole row is marked, a healthy one's is not.
        unhealthy = page.locator('#mc-rows tr[data-health="unhealthy"]')
        for i in range(await unhealthy.count()):
            await _expect_row_marked(unhealthy.nth(i))
        await _expect_row_unmarked(page.locator('#mc-rows tr[data-health="healthy"]').first)

        # The counts over the bars are legible whatever the fill level: MCs and MHs.
        _assert_legible(await _bar_colours(page.locator("#mc-rows")))
        _assert_legible(await _bar_colours(page.locator("#mh-rows")))
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
