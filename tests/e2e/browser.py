"""Headless Debian chromium driven by Playwright, shared by the browser tests.

Playwright never downloads a browser here: it drives /usr/bin/chromium
(scripts/install-browser.sh installs it; CI does). The flags keep chromium off the network.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, ViewportSize, async_playwright

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "browser", "page", "requires_chromium", "viewport"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Skipped on a developer's machine without chromium; never in CI (`CI` set), where a missing
# browser must fail the run instead of turning the browser tests green by skipping them.
requires_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"),
    reason="/usr/bin/chromium is absent: run scripts/install-browser.sh (CI does)",
)


@pytest.fixture
def viewport() -> ViewportSize:
    """Override in a module for another window size."""
    return {"width": 1400, "height": 900}


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser, viewport: ViewportSize) -> AsyncIterator[Page]:
    """A fresh page; any JavaScript error it raises fails the test."""
    context = await browser.new_context(viewport=viewport)
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield opened
    finally:
        await context.close()
    assert errors == [], f"the page raised: {errors}"
