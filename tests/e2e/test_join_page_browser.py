"""The join page in a real browser (Debian's chromium, driven by Playwright).

* Against a real fleet in the test's loop (`tests.client.in_process_fleet`: a GC, two MCs
  serving client signaling, a simulated MH, the test Redis): the page, opened prefilled with
  `/join?meeting=…&name=…`, joins through the GC and the MC's WebSocket and shows itself as
  host; a second participant, joined with `ClientSession`, arrives in the roster, mutes, is
  muted by the page's host, and leaves; names are shown as text; the page's self-mute reaches
  the other participant; Leave takes the page out of the meeting. Without `autojoin=1` the
  prefilled page sends nothing until Join is clicked; with it, the page joins on load — and
  still refuses a bad meeting id, a too-long one or an empty name without asking the GC.
* The dashboard's meetings panel on the GC's real app and store with 150 placed meetings: the
  top 100 by participants, most first, and a count of the rest.

Playwright's own browser download is never used: without `/usr/bin/chromium`
(`scripts/install-browser.sh`) these tests are skipped, and say why. Screenshots land in the
test's `tmp_path`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from playwright.async_api import Page, ViewportSize, expect

from darktower.client.session import ClientSession
from darktower.gc.domain import Health, Heartbeat
from darktower.signaling.protocol import LeaveReason, Muted, ParticipantLeft, ParticipantUpdated
from tests.client import InProcessFleet, Watcher, in_process_fleet
from tests.e2e.browser import requires_chromium
from tests.e2e.gc_app import gc_http_app, serve_app

PAGE_WAIT_MS = 15_000
HOSTILE_NAME = '<img src=x onerror="window.pwned=1">'

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    requires_chromium,
]


@pytest.fixture
def viewport() -> ViewportSize:
    return {"width": 1200, "height": 900}


@pytest.fixture
async def fleet(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> AsyncIterator[InProcessFleet]:
    async with in_process_fleet(tmp_path, redis_url, mcs=2) as started:
        yield started


def _join_requests(page: Page) -> list[str]:
    """The URLs of the join calls (`POST …/join`) the page sends from now on."""
    sent: list[str] = []
    page.on(
        "request",
        lambda r: sent.append(r.url) if r.method == "POST" and r.url.endswith("/join") else None,
    )
    return sent


async def test_a_browser_joins_and_sees_a_second_participant_come_and_go(
    fleet: InProcessFleet, page: Page, tmp_path: Path
) -> None:
    joins = _join_requests(page)
    await page.goto(fleet.gc_url + "/join?meeting=standup&name=Ada%20in%20Chromium")
    await expect(page).to_have_title("darktower · join a meeting")
    await expect(page.locator("#meeting")).to_have_value("standup")
    await expect(page.locator("#name")).to_have_value("Ada in Chromium")
    # Without autojoin the page waits for the click: nothing sent once the page is idle.
    await page.wait_for_load_state("networkidle")
    await expect(page.locator("#status")).to_have_attribute("data-state", "idle")
    assert joins == []

    await page.click("#join")
    await expect(page.locator("#status")).to_have_attribute(
        "data-state", "joined", timeout=PAGE_WAIT_MS
    )
    roster = page.locator("#roster li[data-participant-id]")
    await expect(roster).to_have_count(1)
    me = roster.first
    await expect(me).to_have_attribute("data-self", "true")
    await expect(me).to_have_attribute("data-host", "true")
    await expect(me.locator(".name")).to_have_text("Ada in Chromium")

    async with ClientSession(fleet.gc_url, "standup", display_name=HOSTILE_NAME) as bo:
        await bo.join()
        bo_events = Watcher(bo)
        try:
            # The page's participant is in Bo's roster, as host.
            assert bo.host_id is not None
            host = bo.roster[bo.host_id]
            assert host.display_name == "Ada in Chromium"

            entry = page.locator(f'#roster li[data-participant-id="{bo.participant_id}"]')
            await expect(entry).to_be_visible(timeout=PAGE_WAIT_MS)
            await expect(roster).to_have_count(2)
            await expect(entry.locator(".name")).to_have_text(HOSTILE_NAME)  # text, not markup
            await expect(entry).to_have_attribute("data-self", "false")
            await expect(entry).to_have_attribute("data-muted", "false")
            assert await page.locator("#roster img").count() == 0

            await bo.set_muted(True)
            await expect(entry).to_have_attribute("data-muted", "true", timeout=PAGE_WAIT_MS)
            await expect(entry.locator(".tags")).to_contain_text("muted")

            # The page's self-mute reaches Bo.
            await page.click("#mute")
            await expect(page.locator("#mute")).to_have_attribute("aria-pressed", "true")
            update = await bo_events.expect(
                ParticipantUpdated, lambda e: e.participant.participant_id == bo.host_id
            )
            assert update.participant.muted
            await expect(me).to_have_attribute("data-muted", "true", timeout=PAGE_WAIT_MS)
            assert not bo_events.seen(Muted)
            await page.screenshot(path=tmp_path / "join-page-two.png", full_page=True)

            await bo.leave()
            await expect(entry).to_have_count(0, timeout=PAGE_WAIT_MS)
            await expect(roster).to_have_count(1)
        finally:
            await bo_events.aclose()

    assert await page.evaluate("window.pwned") is None

    # Leave: out of the meeting; a participant still in it would see the page leave.
    async with ClientSession(fleet.gc_url, "standup", display_name="Cy") as cy:
        await cy.join()
        cy_events = Watcher(cy)
        try:
            await expect(roster).to_have_count(2, timeout=PAGE_WAIT_MS)
            page_id = cy.host_id
            await page.click("#leave")
            await expect(page.locator("#status")).to_have_attribute("data-state", "left")
            left = await cy_events.expect(ParticipantLeft, lambda e: e.participant_id == page_id)
            assert left.reason is LeaveReason.VOLUNTARY
            assert cy.host_id == cy.participant_id  # the host left: Cy is host now
        finally:
            await cy_events.aclose()
    await expect(page.locator("#join")).to_be_enabled()
    await expect(page.locator("#roster li")).to_have_count(0)


async def test_autojoin_joins_on_load(fleet: InProcessFleet, page: Page) -> None:
    joins = _join_requests(page)
    await page.goto(fleet.gc_url + "/join?meeting=standup&name=Ada&autojoin=1")
    await expect(page.locator("#status")).to_have_attribute(
        "data-state", "joined", timeout=PAGE_WAIT_MS
    )
    await expect(page.locator("#status")).to_have_text("In standup as Ada.")
    me = page.locator("#roster li[data-participant-id]")
    await expect(me).to_have_count(1)
    await expect(me.locator(".name")).to_have_text("Ada")
    await expect(page.locator("#join")).to_be_disabled()
    await expect(page.locator("#leave")).to_be_enabled()
    assert joins == [fleet.gc_url + "/v1/meetings/standup/join"]

    # The participant really is in the meeting: a second one sees it in the roster.
    async with ClientSession(fleet.gc_url, "standup", display_name="Bo") as bo:
        await bo.join()
        assert [
            p.display_name for p in bo.roster.values() if p.participant_id != bo.participant_id
        ] == ["Ada"]
        await bo.leave()


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("meeting=not%20a%20meeting%20id&name=Ada", "A meeting id is 1-255"),
        (f"meeting={'m' * 256}&name=Ada", "A meeting id is 1-255"),  # not cut to 255: refused
        ("meeting=standup&name=%20%20%20", "Please enter your name"),
        ("meeting=standup", "Please enter your name"),
        (f"meeting=standup&name={'n' * 101}", "at most 100 characters"),
    ],
)
async def test_autojoin_still_checks_its_inputs(
    fleet: InProcessFleet, page: Page, query: str, says: str
) -> None:
    joins = _join_requests(page)
    await page.goto(fleet.gc_url + "/join?" + query + "&autojoin=1")
    await expect(page.locator("#status")).to_have_attribute("data-state", "error")
    await expect(page.locator("#status")).to_contain_text(says)
    await expect(page.locator("#join")).to_be_enabled()
    await page.wait_for_load_state("networkidle")
    assert joins == []


async def test_a_refused_join_is_shown_on_the_page(fleet: InProcessFleet, page: Page) -> None:
    await page.goto(fleet.gc_url + "/join")
    await page.fill("#meeting", "standup")
    await page.fill("#name", "   ")
    await page.click("#join")
    await expect(page.locator("#status")).to_have_attribute("data-state", "error")
    await page.fill("#name", "Ada")
    await page.fill("#meeting", "not a meeting id")
    await page.click("#join")
    await expect(page.locator("#status")).to_have_attribute("data-state", "error")
    await expect(page.locator("#join")).to_be_enabled()


# --- the dashboard's meetings panel ---------------------------------------------------------


@pytest.fixture
async def gc_with_meetings(tmp_path: Path) -> AsyncIterator[str]:
    """The GC's real HTTP app on a real store holding 150 meetings on 3 MCs, with counts."""
    async with gc_http_app(tmp_path) as gc:
        store, region = gc.store, gc.region
        now = datetime.now(UTC)
        loads: dict[str, dict[str, int]] = {f"mc-{i}": {} for i in range(3)}
        for i in range(3):
            await store.upsert_controller(
                f"mc-{i}", region, f"http://mc-{i}:1", None, 500, 9999, now
            )
        for n in range(150):
            meeting, mc_id = f"m-{n:03d}", f"mc-{n % 3}"
            await store.claim_meeting(meeting, region, "gc-1", now, stale_claim_after=timedelta(1))
            await store.activate_assignment(meeting, region, "gc-1", mc_id, [], now)
            loads[mc_id][meeting] = n
        for mc_id, meetings in loads.items():
            await store.record_heartbeat(
                Heartbeat(
                    mc_id,
                    current_meetings=len(meetings),
                    current_participants=sum(meetings.values()),
                    max_meetings=500,
                    max_participants=9999,
                    health=Health.HEALTHY,
                    meeting_loads=meetings,
                    at=now,
                )
            )
        async with serve_app(gc.app) as url:
            yield url


async def test_the_dashboard_shows_the_busiest_meetings_and_counts_the_rest(
    gc_with_meetings: str, page: Page, tmp_path: Path
) -> None:
    await page.goto(gc_with_meetings + "/")
    rows = page.locator("#meeting-rows tr[data-meeting-id]")
    await expect(rows).to_have_count(100, timeout=PAGE_WAIT_MS)
    shown = await rows.evaluate_all(
        "rows => rows.map(r => [r.dataset.meetingId, r.dataset.mcId, r.dataset.participants])"
    )
    assert [tuple(r) for r in shown] == [
        (f"m-{n:03d}", f"mc-{n % 3}", str(n)) for n in range(149, 49, -1)
    ]
    await expect(page.locator("#meeting-count")).to_have_text("(150)")
    await expect(page.locator("#meetings-more")).to_be_visible()
    await expect(page.locator("#meetings-more")).to_have_attribute("data-count", "50")
    await expect(page.locator("#meetings-more")).to_contain_text("50 more meetings")
    await expect(page.locator("#meetings-empty")).to_be_hidden()
    await page.screenshot(path=tmp_path / "dashboard-meetings.png", full_page=True)
