"""The MH's load reports follow the publishers, measured: run as a program inside a network
namespace that has only `lo` and a veth pair of its own (`test_media_load` starts it with
`unshare --net`, as `test_media_browser` does), so WebRTC can reach nothing off the namespace.

`python -m tests.mh.load_scenario WORK_DIR` starts an embedded Redis, a GC and an MC in this
process and one real MH (Janus on the namespace's veth), then headless Chromium with a fake
camera and microphone. It samples the MH's load reports (the figures read from Janus's admin
API and the report sent to the GC) with nobody in the meeting, with one page publishing, with
two pages publishing and receiving each other, and after the second page has gone. It prints
one JSON object (the last line of stdout) for the test to judge.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from playwright.async_api import Page, async_playwright

from darktower.auth.fleet_keys import generate_fleet_keys
from darktower.embedded.redis import EmbeddedRedis
from darktower.mh.gc_link import JanusLoadReporter
from darktower.mh.server import MhApp
from tests.client import in_process_fleet
from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS
from tests.mh.media_scenario import ICE, MEDIA_ARGS
from tests.support.media import mh_settings

WAIT_S = 60.0
SAMPLES = 3  # reports per phase; the phase's bitrate is their median
MAX_BITRATE_MBPS = 100.0


async def _until(what: str, check: Any, timeout: float = WAIT_S) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise TimeoutError(f"not {what} within {timeout:g}s")
        await asyncio.sleep(0.2)


async def _receiving(page: Page) -> bool:
    stats: dict[str, int] = await page.evaluate("window.darktowerMediaStats()")
    return stats["video_frames_decoded"] > 0 and stats["audio_bytes_received"] > 0


async def _samples(reporter: JanusLoadReporter) -> dict[str, Any]:
    """The next `SAMPLES` reports (each a new one): figures and what the report said."""
    taken: list[dict[str, Any]] = []
    while len(taken) < SAMPLES:
        previous = reporter.last
        await _until("a new load report", lambda previous=previous: reporter.last is not previous)
        figures, report = reporter.last_figures, reporter.last
        assert figures is not None and report is not None
        taken.append(
            {
                "publishers": figures.publishers,
                "subscribers": figures.subscribers,
                "bitrate_bps": figures.bitrate_bps,
                "current_streams": report.current_streams,
                "bandwidth_usage_percent": report.bandwidth_usage_percent,
            }
        )
    return {
        "samples": taken,
        "median_bitrate_bps": statistics.median(s["bitrate_bps"] for s in taken),
    }


def _publishers(reporter: JanusLoadReporter, publishers: int, subscribers: int) -> bool:
    figures = reporter.last_figures
    return (
        figures is not None
        and figures.publishers == publishers
        and figures.subscribers == subscribers
        and figures.bitrate_bps > 0
    )


async def scenario(work: Path, out: dict[str, Any]) -> dict[str, Any]:
    generate_fleet_keys(work / "keys", gcs=[], mhs=["mh-1"])
    with EmbeddedRedis() as redis:
        async with in_process_fleet(work, redis.url, mcs=1, mhs=0) as fleet:
            settings = mh_settings(fleet.key_dir, fleet.gc_grpc, "mh-1", work, ice_interface=ICE)
            mh = MhApp(settings.model_copy(update={"max_bitrate_mbps": MAX_BITRATE_MBPS}))
            try:
                await mh.start()
                await _until("MH ready", lambda: mh.ready()[0])
                reporter = mh.reporter
                assert reporter is not None
                out["nobody"] = await _samples(reporter)
                async with async_playwright() as playwright:
                    browser = await playwright.chromium.launch(
                        executable_path=str(CHROMIUM),
                        args=[*CHROMIUM_ARGS, *MEDIA_ARGS],
                        headless=True,
                    )
                    try:
                        await _pages(browser, fleet.gc_url, mh, out)
                    except Exception:
                        out["last_figures"] = repr(reporter.last_figures)
                        out["handles"] = await _handle_infos(mh)
                        raise
                    finally:
                        await browser.close()
            finally:
                await mh.stop()
    return out


async def _handle_infos(mh: MhApp) -> list[Any]:
    """Every handle's `handle_info` (the scenario's diagnostics when it fails)."""
    infos = []
    for session in await mh.admin.list_sessions():
        for handle in await mh.admin.list_handles(session):
            info = await mh.admin.handle_info(session, handle)
            webrtc = info.get("webrtc") or {}
            infos.append(
                {
                    **{k: v for k, v in info.items() if k not in ("webrtc", "token")},
                    "webrtc": {k: webrtc[k] for k in ("ice", "media") if k in webrtc},
                }
            )
    return infos


async def _per_handle(mh: MhApp) -> list[dict[str, Any]]:
    """Each handle's VideoRoom role and bytes of the last second in and out, per medium."""
    rows = []
    for info in await _handle_infos(mh):
        media = (info.get("webrtc") or {}).get("media") or {}
        rows.append(
            {
                "type": (info.get("plugin_specific") or {}).get("type"),
                "in": [m["stats"]["in"].get("bytes_lastsec", 0) for m in media.values()],
                "out": [m["stats"]["out"].get("bytes_lastsec", 0) for m in media.values()],
            }
        )
    return rows


async def _open(browser: Any, gc_url: str, name: str, out: dict[str, Any]) -> Page:
    context = await browser.new_context()
    page: Page = await context.new_page()
    page.on("pageerror", lambda exc: out["errors"].append(str(exc)))
    await page.goto(f"{gc_url}/join?meeting=standup&name={name}&autojoin=1")
    await _until("publishing", lambda: page.locator('#videos[data-state="publishing"]').count())
    return page


async def _pages(browser: Any, gc_url: str, mh: MhApp, out: dict[str, Any]) -> None:
    reporter = mh.reporter
    assert reporter is not None
    await _open(browser, gc_url, "Ada", out)
    await _until("one publisher in the reports", lambda: _publishers(reporter, 1, 0))
    out["one_publisher"] = await _samples(reporter)
    bo = await _open(browser, gc_url, "Bo", out)
    await _until("Bo receiving Ada", lambda: _receiving(bo))
    await _until("two publishers in the reports", lambda: _publishers(reporter, 2, 2))
    out["two_publishers"] = await _samples(reporter)
    out["two_publishers_handles"] = await _per_handle(mh)
    await bo.context.close()
    await _until("one publisher again", lambda: _publishers(reporter, 1, 0))
    out["after_one_left"] = await _samples(reporter)


def main() -> None:
    work = Path(sys.argv[1])
    out: dict[str, Any] = {"errors": []}
    try:
        result = asyncio.run(scenario(work, out))
    except Exception as exc:  # reported to the test, which shows it
        result = {**out, "failed": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
