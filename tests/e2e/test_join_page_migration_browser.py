"""The join page follows a live migration (README "Rolling upgrades"), in a real browser.

A real fleet in the test's loop (`tests.client.in_process_fleet`: a GC, two MCs with client
signaling, a simulated MH); the page joins a meeting, a `ClientSession` joins it too, then the
hosting MC drains (`McApp.drain`, what SIGTERM runs). The page shows the `moving` state (its
states are recorded from the first paint by a MutationObserver), then is back in the meeting
on the other MC as the same participant, the other participant still in its roster, and
nobody saw anyone leave.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from playwright.async_api import Page, expect

from darktower.client.session import ClientSession, Joined
from darktower.signaling.protocol import ParticipantLeft
from tests.client import InProcessFleet, Watcher, in_process_fleet
from tests.e2e.browser import requires_chromium

PAGE_WAIT_MS = 20_000

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120), requires_chromium]

# Every value #status[data-state] takes, in order, from the first paint on.
RECORD_STATES = """
window.__states = [];
document.addEventListener("DOMContentLoaded", () => {
  const status = document.getElementById("status");
  const note = () => window.__states.push(status.dataset.state);
  note();
  new MutationObserver(note).observe(status, { attributes: true, attributeFilter: ["data-state"] });
});
"""


@pytest.fixture
async def fleet(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> AsyncIterator[InProcessFleet]:
    async with in_process_fleet(
        tmp_path, redis_url, mcs=2, mc_overrides={"drain_seconds": 8}
    ) as started:
        yield started


async def test_the_join_page_shows_moving_and_follows_its_meeting_to_another_mc(
    fleet: InProcessFleet, page: Page
) -> None:
    await page.add_init_script(RECORD_STATES)
    await page.goto(fleet.gc_url + "/join?meeting=moving&name=Ada&autojoin=1")
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-state", "joined", timeout=PAGE_WAIT_MS)
    me = page.locator('#roster li[data-self="true"]')
    page_id = await me.get_attribute("data-participant-id")
    assert page_id

    async with ClientSession(fleet.gc_url, "moving", display_name="Bo", user_id="bo") as bo:
        await bo.join()
        bo_events = Watcher(bo)
        try:
            await expect(page.locator("#roster li[data-participant-id]")).to_have_count(
                2, timeout=PAGE_WAIT_MS
            )
            hosting = next(mc for mc in fleet.mcs if "moving" in mc.controller.meetings)
            other = next(mc for mc in fleet.mcs if mc is not hosting)
            await hosting.drain()

            back = await bo_events.expect(Joined, lambda e: e.kind == "reconnected", timeout=20)
            assert back.mc_id == other.settings.id
            await expect(status).to_have_attribute("data-state", "joined", timeout=PAGE_WAIT_MS)
            await expect(status).to_contain_text("Back in moving")
            states = await page.evaluate("window.__states")
            assert "moving" in states, states
            assert states[-1] == "joined" and "left" not in states and "error" not in states
            # The same participant, on the new MC, with Bo still there.
            await expect(me).to_have_attribute("data-participant-id", page_id)
            await expect(page.locator("#roster li[data-participant-id]")).to_have_count(2)
            assert "moving" in other.controller.meetings
            assert page_id in other.controller.meetings["moving"].roster.members
            assert bo_events.seen(ParticipantLeft) == []
        finally:
            await bo_events.aclose()
