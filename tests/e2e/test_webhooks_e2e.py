"""Webhooks from a real fleet (a GC, two MCs, a simulated MH, clients on WebSockets) to a real
`darktower webhook-receiver`: every event of a meeting with joins and departures arrives
signed, verified and in order; a meeting whose MC is killed is `meeting_moved` to the other
one, its participant staying; then, with the receiver down, the GC is killed (SIGKILL) in
the middle of retrying, a new GC process takes over, the receiver comes back, and every event
arrives with no gap in `seq`. The dashboard's webhook panel shows the failure, then health.
No secret appears in any log or in /metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from darktower.auth.api_keys import generate_api_key, write_api_key_file
from darktower.client.session import ClientSession
from darktower.embedded.redis import free_port
from tests.e2e.browser import requires_chromium
from tests.e2e.fleet import Fleet, GcProc, metric
from tests.support.waiting import eventually
from tests.support.webhooks import Receiver, by_meeting

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150), requires_chromium]

WAIT_S = 40.0


def types(events: list[dict[str, Any]]) -> list[tuple[int, str, str | None, str | None]]:
    return [
        (e["seq"], e["type"], (e.get("participant") or {}).get("identity"), e.get("reason"))
        for e in events
    ]


def first_arrivals(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each event once (a duplicate is allowed: at least once), in the order first received."""
    seen: set[str] = set()
    kept = []
    for event in events:
        if event["id"] not in seen:
            seen.add(event["id"])
            kept.append(event)
    return kept


async def test_webhooks_survive_a_receiver_outage_and_a_killed_gc(
    fleet: Fleet, database_url: str, redis_url: str, tmp_path: Path, page: Page
) -> None:
    key = generate_api_key()
    key_file = tmp_path / "webhook-key.json"
    write_api_key_file(key_file, key)
    receiver = Receiver(key_file, free_port(), tmp_path / "receiver.log")
    webhook_env = {
        "GC_WEBHOOK_URLS": receiver.url,
        "GC_WEBHOOK_KEY_FILE": str(key_file),
        "GC_EVENTS_REDIS_URL": redis_url,
        "GC_WEBHOOK_RETRY_CAP_SECONDS": "1",
        "GC_WEBHOOK_LEASE_SECONDS": "3",
    }
    try:
        await asyncio.to_thread(receiver.start)
        gc = await asyncio.to_thread(fleet.start_gc, database_url, wait=False, **webhook_env)
        fleet.start_mc(gc, "mc-1")
        fleet.start_mc(gc, "mc-2")
        fleet.start_mh_group(gc, {"mh-1": "zone-a"})
        await asyncio.to_thread(gc.wait_ready)
        await asyncio.to_thread(fleet.wait_fleet, gc, mcs=["mc-1", "mc-2"], mhs=["mh-1"])

        # A meeting with joins and departures: every event, signed and verified, in order.
        ada = ClientSession(gc.http_url, "standup", display_name="Ada", user_id="ada")
        bob = ClientSession(gc.http_url, "standup", display_name="Bob", user_id="bob")
        await ada.join()
        await bob.join()
        await bob.leave()
        await ada.leave()
        await eventually(
            lambda: len(by_meeting(receiver.events()).get("standup", [])) >= 6,
            timeout=WAIT_S,
            what="the six events of standup",
        )
        standup = first_arrivals(by_meeting(receiver.events())["standup"])
        assert types(standup) == [
            (1, "meeting_started", None, None),
            (2, "participant_joined", "ada", None),
            (3, "participant_joined", "bob", None),
            (4, "participant_left", "bob", "voluntary"),
            (5, "participant_left", "ada", "voluntary"),
            (6, "meeting_ended", None, "last_participant_left"),
        ]
        assert len({e["mc_id"] for e in standup}) == 1

        # Failover: the hosting MC dies; Dee's client follows the meeting to the other MC,
        # which took it over at a higher generation: meeting_moved, no departure, no join.
        dee = ClientSession(gc.http_url, "moving", display_name="Dee", user_id="dee")
        await dee.join()
        first_mc = dee.mc_id
        assert first_mc is not None
        fleet.mcs[first_mc].kill()
        await eventually(
            lambda: dee.mc_id not in (None, first_mc) and dee.participant_id is not None,
            timeout=WAIT_S,
            what="Dee on the other MC",
        )
        await dee.leave()
        await eventually(
            lambda: len(by_meeting(receiver.events()).get("moving", [])) >= 5,
            timeout=WAIT_S,
            what="the five events of the moved meeting",
        )
        moving = first_arrivals(by_meeting(receiver.events())["moving"])
        assert types(moving) == [
            (1, "meeting_started", None, None),
            (2, "participant_joined", "dee", None),
            (3, "meeting_moved", None, None),
            (4, "participant_left", "dee", "voluntary"),
            (5, "meeting_ended", None, "last_participant_left"),
        ]
        assert moving[2]["previous_mc_id"] == first_mc and moving[2]["mc_id"] == dee.mc_id
        assert moving[2]["generation"] > moving[1]["generation"]

        # The receiver goes away; a second meeting's events wait in the GC's retries.
        receiver.kill()
        cy = ClientSession(gc.http_url, "retro", display_name="Cy", user_id="cy")
        await cy.join()
        await cy.leave()
        await eventually(
            lambda: (
                (metric(gc.metrics(), "gc_webhook_delivery_failures_total", reason="connect") or 0)
                >= 2
            ),
            timeout=WAIT_S,
            what="the GC retrying a refused delivery",
        )
        await page.goto(gc.http_url + "/")
        await page.wait_for_selector('#webhooks[data-state="failing"]', timeout=WAIT_S * 1000)
        assert "connect" in (await page.text_content("#webhooks") or "")
        # Killed mid-delivery: its entry was read and never acknowledged.
        gc.kill()
        new_gc: GcProc = await asyncio.to_thread(fleet.start_gc, database_url, **webhook_env)
        await asyncio.to_thread(receiver.start)
        await eventually(
            lambda: len(first_arrivals(by_meeting(receiver.events()).get("retro", []))) >= 4,
            timeout=WAIT_S,
            what="the four events of retro after the outage",
        )
        retro = first_arrivals(by_meeting(receiver.events())["retro"])
        assert types(retro) == [
            (1, "meeting_started", None, None),
            (2, "participant_joined", "cy", None),
            (3, "participant_left", "cy", "voluntary"),
            (4, "meeting_ended", None, "last_participant_left"),
        ]
        status = await asyncio.to_thread(new_gc.json, "/v1/webhooks")
        assert status["enabled"] is True and status["urls"] == 1 and status["delivered"] >= 4
        assert receiver.url not in str(status)
        await page.goto(new_gc.http_url + "/")
        await page.wait_for_selector('#webhooks[data-state="ok"]', timeout=WAIT_S * 1000)
        exposition = await asyncio.to_thread(new_gc.metrics)
        assert (metric(exposition, "gc_webhook_deliveries_total") or 0) >= 4
        survivor = next(mc for mc_id, mc in fleet.mcs.items() if mc_id != first_mc)
        mc_exposition = await asyncio.to_thread(survivor.metrics)
        moved = metric(
            mc_exposition, "mc_webhook_events_total", type="meeting_moved", result="emitted"
        )
        assert moved == 1

        # Secrets: the signing key and the events Redis URL are in no log and no metric.
        texts = [exposition, mc_exposition, receiver.log()] + [p.log() for p in fleet.procs]
        for text in texts:
            assert key.secret not in text
        for proc in (gc, new_gc):
            assert redis_url not in proc.log()
        await asyncio.gather(ada.aclose(), bob.aclose(), cy.aclose(), dee.aclose())
    finally:
        receiver.kill()
