"""`darktower dev --webhook-url URL`: the dev fleet's GC POSTs the meetings' events to URL,
signed with the dev API key; without the option webhooks stay off (docs/webhooks.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from darktower.auth.api_keys import load_api_key_file
from darktower.dev.fleet import Fleet
from darktower.embedded.redis import free_port
from tests.dev.support import StartFleet
from tests.support.waiting import eventually
from tests.support.webhooks import serving_receiver


def test_webhooks_are_off_unless_asked(tmp_path: Path) -> None:
    assert Fleet(workdir=tmp_path)._webhook_env() == {}
    asked = Fleet(workdir=tmp_path, redis_url="redis://127.0.0.1:1/0", webhook_urls=("http://h/",))
    env = asked._webhook_env()
    assert env["GC_WEBHOOK_URLS"] == "http://h/"
    assert env["GC_WEBHOOK_KEY_FILE"] == str(asked.api_key_file)
    assert env["GC_EVENTS_REDIS_URL"] == "redis://127.0.0.1:1/0"


@pytest.mark.timeout(240)
async def test_dev_with_a_webhook_url_delivers_signed_events(start_fleet: StartFleet) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks/darktower"
    fleet = await asyncio.to_thread(start_fleet, "--mcs", "1", "--mhs", "1", "--webhook-url", url)
    record = fleet.state()
    gc_url, key_path = record["gc_url"], record["api_key_file"]
    assert isinstance(gc_url, str) and isinstance(key_path, str)
    key = load_api_key_file(Path(key_path))
    # The receiver comes up after the fleet: what was recorded meanwhile is retried to it.
    async with serving_receiver(key.secret, port) as receiver, httpx.AsyncClient() as client:
        placed = await client.post(f"{gc_url}/v1/meetings/standup/join", timeout=30)
        assert placed.status_code == 200, placed.text
        await eventually(
            lambda: any(e["meeting_id"] == "standup" for e in receiver.events),
            timeout=60,
            what="the meeting_started event, verified by the receiver",
        )
        started = next(e for e in receiver.events if e["meeting_id"] == "standup")
        assert (started["type"], started["seq"]) == ("meeting_started", 1)
        status = (await client.get(f"{gc_url}/v1/webhooks", timeout=30)).json()
        assert status["enabled"] is True and status["urls"] == 1
    assert key.secret not in fleet.output()
    assert await asyncio.to_thread(fleet.interrupt) == 0
