"""The GC's webhook settings: what turns delivery on, what refuses to start, what stays secret."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from darktower.auth.access_tokens import mint_access_token
from darktower.auth.api_keys import ApiKeyRing, generate_api_key, write_api_key_file
from darktower.gc.access import GcAccess
from darktower.gc.settings import GcSettings
from darktower.gc.webhooks import GcWebhooks
from darktower.gc.webhooks_route import mount_webhooks_status
from darktower.runtime.service_cli import settings_errors
from darktower.runtime.serving import StartupError
from darktower.webhooks.delivery import redacted_url
from tests.e2e.gc_app import gc_http_app

SECRET_URL = "https://user:hunter2-pw@hooks.example/darktower?token=s3cr3t-token"
REDIS = "redis://:redis-pw-7f3a@127.0.0.1:6379/2"


def test_webhooks_are_off_without_urls() -> None:
    assert GcWebhooks.from_settings(GcSettings()) is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ftp://hooks.example/x", "webhook URL 1 must be http:// or https:// with a host"),
        (f"https://ok.example,{SECRET_URL.replace('https', 'file')}", "webhook URL 2 must be"),
        ("https://", "webhook URL 1 must be"),
        ("https://a.example:99999/", "webhook URL 1 is not a URL"),
        ("https://a.example,https://a.example", "listed twice"),
        (",".join(f"https://h{i}.example" for i in range(11)), "at most 10"),
        ("https://a.example/" + "x" * 2100, "longer than 2048"),
    ],
)
def test_bad_urls_are_refused_naming_their_position_never_their_text(
    value: str, message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        GcSettings(webhook_urls=value)
    text = settings_errors(refused.value, "GC_")
    assert "GC_WEBHOOK_URLS" in text and message in text
    assert "hunter2" not in text and "s3cr3t" not in text


def test_urls_need_a_signing_key_and_the_events_redis(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="GC_WEBHOOK_KEY_FILE"):
        GcWebhooks.from_settings(GcSettings(webhook_urls=[SECRET_URL], events_redis_url=REDIS))
    key_file = tmp_path / "key.json"
    write_api_key_file(key_file, generate_api_key())
    with pytest.raises(StartupError, match="GC_EVENTS_REDIS_URL"):
        GcWebhooks.from_settings(GcSettings(webhook_urls=[SECRET_URL], webhook_key_file=key_file))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(StartupError, match="GC_WEBHOOK_KEY_FILE") as bad:
        GcWebhooks.from_settings(
            GcSettings(
                webhook_urls=[SECRET_URL],
                webhook_key_file=tmp_path / "bad.json",
                events_redis_url=REDIS,
            )
        )
    assert "redis-pw" not in str(bad.value)
    with pytest.raises(StartupError, match="GC_EVENTS_REDIS_URL") as malformed:
        GcWebhooks.from_settings(
            GcSettings(
                webhook_urls=[SECRET_URL],
                webhook_key_file=key_file,
                events_redis_url="redis+cluster://:redis-pw-7f3a@/",
            )
        )
    assert "redis-pw" not in str(malformed.value)
    webhooks = GcWebhooks.from_settings(
        GcSettings(
            webhook_urls=[SECRET_URL],
            webhook_key_file=key_file,
            events_redis_url=REDIS,
        )
    )
    assert webhooks is not None
    assert "hunter2" not in repr(webhooks) and "s3cr3t" not in repr(webhooks)


def test_the_events_redis_url_and_its_password_are_redacted_from_logs() -> None:
    settings = GcSettings(events_redis_url=REDIS)
    assert REDIS in settings.secret_values() and "redis-pw-7f3a" in settings.secret_values()
    assert "redis-pw" not in repr(settings)


def test_a_url_in_a_log_line_has_no_credentials_and_no_query() -> None:
    assert redacted_url(SECRET_URL) == "https://hooks.example/darktower"
    assert redacted_url("http://127.0.0.1:8099/h") == "http://127.0.0.1:8099/h"


async def test_the_status_route_is_an_operator_read_and_never_shows_a_url(tmp_path: Path) -> None:
    key = generate_api_key()
    key_file = tmp_path / "api-key.json"
    write_api_key_file(key_file, key)
    access = GcAccess(ApiKeyRing([key_file]), allow_guests=False)
    hooks_key = tmp_path / "hooks.json"
    write_api_key_file(hooks_key, generate_api_key())
    webhooks = GcWebhooks.from_settings(
        GcSettings(webhook_urls=[SECRET_URL], webhook_key_file=hooks_key, events_redis_url=REDIS)
    )
    assert webhooks is not None
    async with gc_http_app(tmp_path, access=access) as app:
        mount_webhooks_status(app.app, webhooks, access)
        transport = httpx.ASGITransport(app=app.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gc.test") as client:
            missing = await client.get("/v1/webhooks")
            assert (missing.status_code, missing.json()["reason"]) == (401, "token_missing")
            participant = mint_access_token(key, identity="ada", meeting_id="standup", name="A")
            refused = await client.get("/v1/webhooks", headers=bearer(participant))
            assert (refused.status_code, refused.json()["reason"]) == (403, "admin_required")
            admin = mint_access_token(key, identity="ops", meeting_id=None, name="O", admin=True)
            answer = await client.get("/v1/webhooks", headers=bearer(admin))
            assert answer.status_code == 200
            assert answer.json() == {
                "enabled": True,
                "urls": 1,
                "partitions": 16,
                "partitions_held": 0,
                "delivered": 0,
                "failed_attempts": 0,
                "last_delivered_at": None,
                "last_failure_reason": None,
                "last_failure_at": None,
                "queue_depth": 0,
                "oldest_undelivered_age_seconds": 0.0,
            }
            assert "hunter2" not in answer.text and "hooks.example" not in answer.text
    await webhooks.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
