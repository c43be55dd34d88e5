"""The GC's webhook settings: what turns delivery on, what refuses to start, what stays secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from darktower.auth.api_keys import generate_api_key, write_api_key_file
from darktower.gc.settings import GcSettings
from darktower.gc.webhooks import GcWebhooks
from darktower.runtime.service_cli import settings_errors
from darktower.runtime.serving import StartupError
from darktower.webhooks.delivery import redacted_url

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
