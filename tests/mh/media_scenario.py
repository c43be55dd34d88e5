"""The browser media scenario, run as a program inside a network namespace that has only `lo`
(`test_media_browser` starts it with `unshare --net`): so that WebRTC's ICE can use nothing but
loopback, whatever interfaces the machine has.

`python -m tests.mh.media_scenario WORK_DIR` starts an embedded Redis, a fleet in this process
(GC, one MC, two real MHs with Janus on loopback candidates), and headless Chromium with fake
camera and microphone; two pages join one meeting through `/join`; then it measures what each
page receives (WebRTC stats), the primary MH's load reports, and what happens when the primary
MH is killed (the time from the kill to frames on both pages). It prints one JSON object (the
last line of stdout) for the test to judge.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from playwright.async_api import Page, async_playwright

from darktower.auth.fleet_keys import generate_fleet_keys
from darktower.embedded.redis import EmbeddedRedis
from darktower.mc.meeting.messages import MuteIdentity
from darktower.mh.server import MhApp
from tests.client import InProcessFleet, in_process_fleet
from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.media import mh_settings

MEDIA_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
WAIT_S = 45.0
ICE_SERVERS = "stun:127.0.0.1:3479"
# Janus gathers no candidates on a loopback interface (IFF_LOOPBACK is skipped), so the namespace
# also has a veth pair of its own (`NAMESPACE_SETUP`): both ends inside, linked to nothing else.
ICE = "media0"
NAMESPACE_SETUP = (
    "ip link set lo up"
    " && ip link add media0 type veth peer name media1"
    " && ip addr add 10.77.0.1/24 dev media0 && ip addr add 10.77.0.2/24 dev media1"
    " && ip link set media0 up && ip link set media1 up"
)


async def _until(what: str, check: Any, timeout: float = WAIT_S) -> float:
    started = time.monotonic()
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"not {what} within {timeout:g}s")
        await asyncio.sleep(0.25)


async def _stats(page: Page) -> dict[str, Any]:
    stats: dict[str, Any] = await page.evaluate("window.darktowerMediaStats()")
    return stats


async def _audio_bytes(page: Page) -> int:
    return int((await _stats(page))["audio_bytes_received"])


async def _audio_still(page: Page) -> bool:
    """No audio received during a second (Opus sends ~50 packets a second while it flows)."""
    before = await _audio_bytes(page)
    await asyncio.sleep(1.0)
    return await _audio_bytes(page) == before


async def _audio_flows(page: Page) -> bool:
    before = await _audio_bytes(page)
    await asyncio.sleep(1.0)
    return await _audio_bytes(page) > before


async def _all_updated(pages: list[Page]) -> bool:
    return all([(await _stats(p))["updates"] >= 1 for p in pages])


async def _receiving(page: Page) -> bool:
    s = await _stats(page)
    return bool(s["video_frames_decoded"] > 0 and s["audio_bytes_received"] > 0)


async def scenario(work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    generate_fleet_keys(work / "keys", gcs=[], mhs=["mh-1", "mh-2"])
    with EmbeddedRedis() as redis:
        # A STUN URL in the join answers (`GC_ICE_SERVERS`): the pages' PeerConnections must
        # carry it (nothing listens there; ICE goes on with the host candidates).
        gc_ice = {"ice_servers": ICE_SERVERS}
        async with in_process_fleet(work, redis.url, mcs=1, mhs=0, gc_overrides=gc_ice) as fleet:
            mhs: dict[str, MhApp] = {}
            try:
                for mh_id, zone in (("mh-1", "zone-a"), ("mh-2", "zone-b")):
                    settings = mh_settings(
                        fleet.key_dir, fleet.gc_grpc, mh_id, work, zone=zone, ice_interface=ICE
                    )
                    mh = MhApp(settings)
                    mhs[mh_id] = mh
                    await mh.start()
                for mh in mhs.values():
                    await _until("MH ready", lambda mh=mh: mh.ready()[0])

                async def placeable() -> bool:
                    assert fleet.gc.store is not None
                    handlers = await fleet.gc.store.list_media_handlers()
                    return sum(h.health.value == "healthy" for h in handlers) == 2

                await _until("both MHs healthy at the GC", placeable)
                async with async_playwright() as playwright:
                    browser = await playwright.chromium.launch(
                        executable_path=str(CHROMIUM),
                        args=[*CHROMIUM_ARGS, *MEDIA_ARGS],
                        headless=True,
                    )
                    try:
                        out.update(await _in_browser(browser, fleet, mhs))
                    finally:
                        await browser.close()
            finally:
                for mh in mhs.values():
                    await mh.stop()
    return out


async def _in_browser(browser: Any, fleet: InProcessFleet, mhs: dict[str, MhApp]) -> dict[str, Any]:
    out: dict[str, Any] = {"errors": [], "console": []}
    pages: list[Page] = []
    try:
        await _pages(browser, fleet, mhs, out, pages)
    except Exception as exc:
        out["failed"] = f"{type(exc).__name__}: {exc}"
        out["page_states"] = [
            {
                "status": await p.text_content("#status"),
                "videos": await p.get_attribute("#videos", "data-state"),
                "mh": await p.get_attribute("#videos", "data-mh"),
            }
            for p in pages
        ]
    return out


async def _pages(
    browser: Any,
    fleet: InProcessFleet,
    mhs: dict[str, MhApp],
    out: dict[str, Any],
    pages: list[Page],
) -> None:
    gc_url = fleet.gc_url
    for name in ("Ada", "Bo"):
        page = await (await browser.new_context()).new_page()
        page.on("pageerror", lambda exc: out["errors"].append(str(exc)))
        page.on("console", lambda msg: out["console"].append(msg.text[:300]))
        await page.goto(f"{gc_url}/join?meeting=standup&name={name}&autojoin=1")
        pages.append(page)
    for page in pages:
        await _until(
            "publishing", lambda page=page: page.locator('#videos[data-state="publishing"]').count()
        )
    primary = await pages[0].get_attribute("#videos", "data-mh")
    out["primary"] = primary
    out["pages_on"] = [await p.get_attribute("#videos", "data-mh") for p in pages]
    out["seconds_to_media"] = [
        await _until("receiving media", lambda page=page: _receiving(page)) for page in pages
    ]
    out["stats"] = [await _stats(p) for p in pages]
    out["tiles"] = [await p.locator("#videos .tile").count() for p in pages]
    # Load reports follow the publishers: two publishers and two subscriptions.
    assert primary is not None
    reporter = mhs[primary].reporter
    assert reporter is not None
    await _until(
        "a load report with the streams",
        lambda: reporter.last is not None and reporter.last.current_streams >= 4,
    )
    out["primary_streams"] = reporter.last.current_streams if reporter.last else None
    # Mute: the outgoing audio track is disabled, the video goes on.
    await pages[0].click("#mute")
    out["muted_track_enabled"] = await pages[0].evaluate(
        "Array.from(document.querySelectorAll('#videos .tile[data-self=\"true\"] video'))"
        ".map(v => v.srcObject.getAudioTracks().map(t => t.enabled)).flat()"
    )
    # Host mute enforced by the MH: Bo is host-muted (the meeting API's mute), then his page
    # turns its microphone back on as a modified client would; Ada receives no more of his
    # audio (Janus drops it), until the host unmutes him.
    meeting = fleet.mcs[0].controller.meetings["standup"]
    bo = next(m for m in meeting.roster.members.values() if m.display_name == "Bo")
    await meeting.ask(MuteIdentity(bo.user_id, True))
    await pages[1].evaluate(
        "document.querySelector('#videos .tile[data-self=\"true\"] video').srcObject"
        ".getAudioTracks().forEach(t => { t.enabled = true; })"
    )
    await _until("Ada hearing nothing of Bo", lambda: _audio_still(pages[0]))
    out["host_muted_audio_stopped"] = True
    await meeting.ask(MuteIdentity(bo.user_id, False))
    await _until("Ada hearing Bo again", lambda: _audio_flows(pages[0]))
    out["host_unmuted_audio_flows"] = True
    # The primary MH dies: its Janus is killed (SIGKILL, the clients' sockets drop at once)
    # and the MH process with it (its gRPC and health answers stop). The MC's media watch
    # sees it within a second, registers both participants on the backup and sends each a
    # `media_update`; both pages move to the backup and frames come again.
    keeper = mhs[primary].keeper
    assert keeper.process is not None
    killed = time.monotonic()
    os.kill(keeper.process.pid, signal.SIGKILL)
    await mhs[primary].stop()
    for page in pages:
        await _until(
            "moved to the backup",
            lambda page=page: page.evaluate(
                f"document.querySelector('#videos').dataset.mh !== '{primary}'"
                " && document.querySelector('#videos').dataset.state === 'publishing'"
            ),
        )
    out["after_failover_on"] = [await p.get_attribute("#videos", "data-mh") for p in pages]
    out["seconds_to_media_after_failover"] = [
        await _until("receiving media again", lambda page=page: _receiving(page)) for page in pages
    ]
    out["seconds_kill_to_frames"] = round(time.monotonic() - killed, 2)
    await _until(
        "a media_update on both pages",
        lambda: _all_updated(pages),
    )
    out["stats_after_failover"] = [await _stats(p) for p in pages]


def main() -> None:
    work = Path(sys.argv[1])
    try:
        result = asyncio.run(scenario(work))
    except Exception as exc:  # reported to the test, which shows it
        result = {"failed": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
