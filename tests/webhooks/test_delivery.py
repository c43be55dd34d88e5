"""Delivery from a real Redis to the verifying receiver app on a real loopback HTTP server
(in this process; tests/e2e/test_webhooks_e2e.py and test_docs.py run the receiver process):
signed, in per-meeting order, shared by two dispatchers without sending an event twice, every
event after the receiver was down; and the receiver refusing what it must."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.responses import RedirectResponse
from starlette.routing import Route

from darktower.auth.api_keys import ApiKey, generate_api_key, write_api_key_file
from darktower.embedded.redis import free_port
from darktower.fencing import Lease
from darktower.webhooks.delivery import DeliverySettings, WebhookDispatcher
from darktower.webhooks.events import EventParticipant
from darktower.webhooks.outbox import EventOutbox
from darktower.webhooks.signature import SIGNATURE_HEADER, compute, sign
from tests.support.http_abuse import stream_body
from tests.support.metrics import sample
from tests.support.waiting import eventually
from tests.support.webhooks import by_meeting, serving_app, serving_receiver

GEN = 1_764_000_000_000_001
WAIT_S = 30.0


@pytest.fixture
def api_key(tmp_path: Path) -> tuple[ApiKey, Path]:
    key = generate_api_key()
    path = tmp_path / "webhook-key.json"
    write_api_key_file(path, key)
    return key, path


@contextlib.asynccontextmanager
async def dispatching(
    client: aioredis.Redis, settings: DeliverySettings, holder: str
) -> AsyncIterator[WebhookDispatcher]:
    dispatcher = WebhookDispatcher(client, settings, holder=holder)
    task = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await dispatcher.stop()


async def record_meetings(client: aioredis.Redis, meetings: list[str], people: int) -> int:
    """For each meeting: started, `people` joins, their departures, ended; the event count."""
    outbox = EventOutbox(client)
    count = 0
    for meeting_id in meetings:
        lease = Lease(meeting_id, "mc-1", GEN)
        await outbox.meeting_acquired(lease)
        members = [
            EventParticipant(f"p-{i}", f"user-{i}", f"User {i}", "participant")
            for i in range(people)
        ]
        for member in members:
            await outbox.participant_joined(lease, member)
        for member in members:
            await outbox.participant_left(lease, member, "voluntary")
        await outbox.meeting_ended(lease, "last_participant_left")
        count += 2 + 2 * people
    return count


def assert_in_order_without_gaps(
    events: list[dict[str, Any]], meetings: list[str], per: int
) -> None:
    grouped = by_meeting(events)
    assert sorted(grouped) == sorted(meetings)
    for meeting_id, events in grouped.items():
        assert [e["seq"] for e in events] == list(range(1, per + 1)), meeting_id
        assert events[0]["type"] == "meeting_started"
        assert events[-1]["type"] == "meeting_ended"


async def test_two_dispatchers_deliver_every_event_once_signed_and_in_order(
    redis_client: aioredis.Redis, api_key: tuple[ApiKey, Path]
) -> None:
    key, _ = api_key
    meetings = [f"room-{i}" for i in range(8)]
    total = await record_meetings(redis_client, meetings, people=2)
    delivered_before = sample("gc_webhook_deliveries_total")
    async with serving_receiver(key.secret) as receiver:
        settings = DeliverySettings(urls=(receiver.url,), key_id=key.key_id, secret=key.secret)
        async with (
            dispatching(redis_client, settings, "gc-a") as first,
            dispatching(redis_client, settings, "gc-b") as second,
        ):
            await eventually(
                lambda: len(receiver.events) >= total, timeout=WAIT_S, what=f"{total} events"
            )
            await eventually(
                lambda: len(first.held) + len(second.held) == 16,
                timeout=WAIT_S,
                what="all leased",
            )
            assert not first.held & second.held  # each partition delivered by one of them
            await asyncio.sleep(0.5)  # a second copy of any event would arrive by now
        events = list(receiver.events)
    assert len(events) == total
    assert len({e["id"] for e in events}) == total  # none sent twice
    assert_in_order_without_gaps(events, meetings, per=6)
    assert sample("gc_webhook_deliveries_total") - delivered_before == total


async def test_a_receiver_down_for_a_while_then_up_gets_every_event_in_order(
    redis_client: aioredis.Redis, api_key: tuple[ApiKey, Path]
) -> None:
    key, _ = api_key
    meetings = ["down-1", "down-2", "down-3"]
    total = await record_meetings(redis_client, meetings, people=3)
    port = free_port()  # nothing listens there yet
    settings = DeliverySettings(
        urls=(f"http://127.0.0.1:{port}/hooks/darktower",),
        key_id=key.key_id,
        secret=key.secret,
        retry_base_seconds=0.2,
        retry_cap_seconds=0.8,
        lease_seconds=3.0,
    )
    refused_before = sample("gc_webhook_delivery_failures_total", reason="connect")
    async with dispatching(redis_client, settings, "gc-a"):
        await eventually(
            lambda: (
                sample("gc_webhook_delivery_failures_total", reason="connect") >= refused_before + 6
            ),
            timeout=WAIT_S,
            what="several refused attempts",
        )
        await eventually(
            lambda: sample("gc_webhook_retry_queue_depth") >= total,
            timeout=WAIT_S,
            what="the backlog measured",
        )
        assert sample("gc_webhook_oldest_undelivered_age_seconds") > 0
        async with serving_receiver(key.secret, port) as receiver:
            await eventually(
                lambda: len(receiver.events) >= total, timeout=WAIT_S, what=f"{total} events"
            )
            await eventually(
                lambda: sample("gc_webhook_retry_queue_depth") == 0,
                timeout=WAIT_S,
                what="the backlog gone",
            )
            events = list(receiver.events)
    assert_in_order_without_gaps(events, meetings, per=8)
    assert sample("gc_webhook_oldest_undelivered_age_seconds") == 0


async def test_the_receiver_refuses_forged_replayed_tampered_and_oversized_requests(
    api_key: tuple[ApiKey, Path],
) -> None:
    key, _ = api_key
    body = b'{"id":"evt_1","seq":1,"type":"meeting_started","meeting_id":"standup"}'
    now = int(time.time())
    other = generate_api_key()

    def headers(signature: str) -> dict[str, str]:
        return {SIGNATURE_HEADER: signature, "Content-Type": "application/json"}

    cases = [
        ("no signature", {}, body, 401, "missing"),
        ("forged", headers(f"t={now},v1={'0' * 64}"), body, 401, "mismatch"),
        ("wrong key", headers(sign(other.secret, body)), body, 401, "mismatch"),
        ("tampered body", headers(sign(key.secret, body)), body + b" ", 401, "mismatch"),
        (
            "replayed after 6 min",
            headers(f"t={now - 360},v1={compute(key.secret, now - 360, body)}"),
            body,
            401,
            "stale",
        ),
        ("garbage header", headers("t=soon"), body, 401, "malformed"),
        ("not JSON", headers(sign(key.secret, b"[1,2]")), b"[1,2]", 400, None),
    ]
    async with serving_receiver(key.secret) as receiver, httpx.AsyncClient(timeout=10) as client:
        for name, sent_headers, sent_body, status, reason in cases:
            answer = await client.post(receiver.url, content=sent_body, headers=sent_headers)
            assert answer.status_code == status, name
            if reason is not None:
                assert answer.json() == {"error": "bad_signature", "reason": reason}, name

        # A chunked 32 MiB body and a declared one: refused at the cap (64 KiB), long before
        # their end (what was sent before the answer is the kernel's buffers).
        base = receiver.url.removesuffix("/hooks/darktower")
        total = 32 << 20
        chunked = await stream_body(base, "/hooks/darktower", total=total)
        assert chunked.status == 413 and chunked.bytes_sent < total
        declared = await stream_body(base, "/hooks/darktower", total=total, content_length=total)
        assert declared.status == 413 and declared.bytes_sent < total
        assert receiver.events == []  # nothing accepted
        good = await client.post(
            receiver.url, content=body, headers=headers(sign(key.secret, body))
        )
        assert good.status_code == 204
        assert [e["id"] for e in receiver.events] == ["evt_1"]


async def test_a_redirect_is_a_failure_and_is_never_followed(
    redis_client: aioredis.Redis, api_key: tuple[ApiKey, Path]
) -> None:
    key, _ = api_key
    await record_meetings(redis_client, ["moved-away"], people=0)
    async with serving_receiver(key.secret) as target:
        redirecting = Starlette(
            routes=[
                Route(
                    "/{path:path}",
                    lambda _request: RedirectResponse(target.url, status_code=307),
                    methods=["POST"],
                )
            ]
        )
        async with serving_app(redirecting) as url:
            settings = DeliverySettings(
                urls=(url,),
                key_id=key.key_id,
                secret=key.secret,
                retry_base_seconds=0.1,
                retry_cap_seconds=0.2,
            )
            before = sample("gc_webhook_delivery_failures_total", reason="redirect")
            async with dispatching(redis_client, settings, "gc-a"):
                await eventually(
                    lambda: (
                        sample("gc_webhook_delivery_failures_total", reason="redirect")
                        >= before + 3
                    ),
                    timeout=WAIT_S,
                    what="redirects counted as failures",
                )
        assert target.events == []  # the redirect's target never got the event
