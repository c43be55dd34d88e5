"""The join page and the dashboard against a GC without guests (README "Access model"), in a
real browser (Debian's chromium, Playwright): with `#token=…` in the address the page joins as
the token's participant, host by its role, and the dashboard reads with an admin token; the
fragment leaves the address bar at once; without a token both show the GC's refusal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from playwright.async_api import Page, expect

from darktower.auth.access_tokens import mint_access_token
from darktower.auth.api_keys import generate_api_key, write_api_key_file
from tests.client import InProcessFleet, in_process_fleet
from tests.e2e.browser import requires_chromium

PAGE_WAIT_MS = 15_000
KEY = generate_api_key()

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120), requires_chromium]


@pytest.fixture
async def fleet(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> AsyncIterator[InProcessFleet]:
    key_file = tmp_path / "api-key.json"
    write_api_key_file(key_file, KEY)
    overrides = {"allow_guests": False, "api_key_files": [key_file]}
    async with in_process_fleet(tmp_path, redis_url, gc_overrides=overrides) as started:
        yield started


async def test_the_join_page_joins_with_the_token_in_its_address(
    fleet: InProcessFleet, page: Page
) -> None:
    token = mint_access_token(
        KEY, identity="ada", meeting_id="lecture", name="Ada Lovelace", role="host"
    )
    sent: list[str | None] = []
    page.on(
        "request",
        lambda r: sent.append(r.headers.get("authorization")) if r.method == "POST" else None,
    )
    await page.goto(f"{fleet.gc_url}/join?meeting=lecture&name=Someone&autojoin=1#token={token}")
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-state", "joined", timeout=PAGE_WAIT_MS)
    assert "#" not in page.url  # the fragment is gone from the address bar
    assert sent and sent[0] == f"Bearer {token}"
    me = page.locator('#roster li[data-self="true"]')
    await expect(me.locator(".name")).to_have_text("Ada Lovelace")  # the token's name wins
    await expect(me).to_have_attribute("data-host", "true")


async def test_without_a_token_the_page_shows_the_refusal(
    fleet: InProcessFleet, page: Page
) -> None:
    await page.goto(f"{fleet.gc_url}/join?meeting=lecture&name=Guest&autojoin=1")
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-state", "error", timeout=PAGE_WAIT_MS)
    await expect(status).to_contain_text("access token")


async def test_the_dashboard_reads_with_an_admin_token(fleet: InProcessFleet, page: Page) -> None:
    admin = mint_access_token(KEY, identity="ops", meeting_id=None, admin=True)
    await page.goto(f"{fleet.gc_url}/#token={admin}")
    await expect(page.locator("tr[data-mc-id]")).to_have_count(1, timeout=PAGE_WAIT_MS)
    assert "#" not in page.url
    await page.goto(f"{fleet.gc_url}/")
    await expect(page.locator("#error-banner")).to_be_visible(timeout=PAGE_WAIT_MS)
