"""`/docs` in a real browser (Debian's chromium, driven by Playwright), on the GC's real app.

The page must work with no internet: every request the browser makes while loading and using
it is recorded, and none may leave the loopback address the GC listens on. It renders every
operation of the GC's own `/openapi.json` (compared with what FastAPI generates) and its
schemas, its response carries the strict Content-Security-Policy of the GC's pages, the
browser reports no CSP violation, and a try-it form calls the API and shows the answer.

Playwright's own browser download is never used: without `/usr/bin/chromium`
(`scripts/install-browser.sh`) these tests are skipped, and say why.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import ConsoleMessage, Page, Request, expect

from darktower.gc.api_docs import API_DOCS_CSP
from tests.e2e.browser import requires_chromium
from tests.e2e.gc_app import gc_http_app, serve_app

PAGE_WAIT_MS = 15_000
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(90),
    requires_chromium,
]


@pytest.fixture
async def gc(tmp_path: Path) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """The GC's HTTP app served on loopback: its base URL and its OpenAPI document."""
    async with gc_http_app(tmp_path) as app, serve_app(app.app) as url:
        yield url, app.app.openapi()


class Recorder:
    """Every request the page makes, and every console error (CSP violations land there)."""

    def __init__(self, page: Page) -> None:
        self.urls: list[str] = []
        self.console_errors: list[str] = []
        page.on("request", self._request)
        page.on("console", self._console)

    def _request(self, request: Request) -> None:
        self.urls.append(request.url)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def off_loopback(self) -> list[str]:
        """URLs that would need the network: any scheme but data:, any host but 127.0.0.1."""
        return [
            u
            for u in self.urls
            if not u.startswith("data:") and urlsplit(u).hostname != "127.0.0.1"
        ]


async def test_docs_renders_every_operation_offline(
    gc: tuple[str, dict[str, Any]], page: Page, tmp_path: Path
) -> None:
    url, spec = gc
    seen = Recorder(page)
    response = await page.goto(url + "/docs")
    assert response is not None and response.status == 200
    assert response.headers["content-security-policy"] == API_DOCS_CSP
    await expect(page.locator("#status")).to_have_attribute(
        "data-state", "ready", timeout=PAGE_WAIT_MS
    )
    await expect(page.locator("#title")).to_have_text("darktower Global Controller")

    expected = [(m, path) for path, item in spec["paths"].items() for m in METHODS if m in item]
    assert len(expected) >= 9
    ops = page.locator("#operations details.op")
    await expect(ops).to_have_count(len(expected))
    shown = await ops.evaluate_all("ops => ops.map(o => [o.dataset.method, o.dataset.path])")
    assert [tuple(x) for x in shown] == expected
    await expect(page.locator("body")).to_have_attribute("data-operations", str(len(expected)))
    await expect(page.locator("#toc li")).to_have_count(len(expected))

    # One operation in full: its summary line, parameters, body and responses.
    join = page.locator('details.op[data-path="/v1/meetings/{meeting_id}/join"]')
    await join.locator("summary").click()
    await expect(join.locator("summary")).to_contain_text("POST")
    await expect(join.locator('tr[data-param="meeting_id"]')).to_contain_text("path")
    await expect(join.locator("ul.content").first).to_contain_text("application/json")
    for status in ("200", "400", "503"):
        await expect(join.locator(f'tr[data-status="{status}"]')).to_be_visible()
    meetings = page.locator('details.op[data-method="get"][data-path="/v1/meetings"]')
    await meetings.locator("summary").click()
    await expect(meetings.locator('tr[data-param="limit"]')).to_contain_text("≤ 1000")
    await page.screenshot(path=tmp_path / "docs-top.png", full_page=False)

    # Every schema, with its properties; a $ref is a link to the schema.
    names = sorted(spec["components"]["schemas"])
    schemas = page.locator("#schemas section.schema")
    await expect(schemas).to_have_count(len(names))
    join_out = page.locator('section.schema[data-name="JoinOut"]')
    await expect(join_out.locator('tr[data-property="join_token"]')).to_contain_text("JWT")
    await join.locator('a.ref[href="#schema-JoinOut"]').first.click()
    await expect(join_out).to_be_in_viewport()
    await page.screenshot(path=tmp_path / "docs.png", full_page=False)

    # Try it: a real call to this GC from the page, its answer shown.
    controllers = page.locator('details.op[data-method="get"][data-path="/v1/controllers"]')
    await controllers.locator("summary").click()
    await controllers.locator("form.try button").click()
    answer = controllers.locator(".try-answer")
    await expect(answer).to_have_attribute("data-status", "200", timeout=PAGE_WAIT_MS)
    await expect(answer).to_contain_text("[]")
    # A path parameter and a refused request: the GC's 400 is shown as it came.
    await join.locator('input[name="meeting_id"]').fill("not a meeting id")
    await join.locator("form.try button").click()
    await expect(join.locator(".try-answer")).to_have_attribute(
        "data-status", "400", timeout=PAGE_WAIT_MS
    )
    await expect(join.locator(".try-answer")).to_contain_text("invalid_argument")

    assert seen.urls, "no request recorded"
    assert seen.off_loopback() == []
    assert any(u.endswith("/openapi.json") for u in seen.urls)
    # No CSP violation nor script error; the one error logged is the refused try-it call's.
    assert all("status of 400" in e for e in seen.console_errors), seen.console_errors


async def test_redoc_is_gone(gc: tuple[str, dict[str, Any]], page: Page) -> None:
    url, _ = gc
    seen = Recorder(page)
    response = await page.goto(url + "/redoc")
    assert response is not None and response.status == 404
    assert seen.off_loopback() == []
