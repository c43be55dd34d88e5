"""The rule for webhook URLs (`GC_WEBHOOK_URLS`): absolute http(s) URLs with a host.

A URL may carry credentials or a token (in its user info or query): it is never logged whole
(`delivery.redacted_url`), and an error about one names its position, not its text.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from darktower.runtime.settings_doc import split_list

__all__ = ["MAX_URLS", "MAX_URL_CHARS", "split_webhook_urls"]

MAX_URLS = 10
MAX_URL_CHARS = 2048


def split_webhook_urls(value: object) -> list[str]:
    """A comma-separated string (or a list) of URLs → the list; ValueError naming the first
    bad one by its position (1-based)."""
    urls = split_list(value, most=MAX_URLS, plural="webhook URLs")
    for position, url in enumerate(urls, 1):
        if len(url) > MAX_URL_CHARS:
            raise ValueError(f"webhook URL {position} is longer than {MAX_URL_CHARS} characters")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise ValueError(f"webhook URL {position} is not a URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook URL {position} must be http:// or https:// with a host")
    if len(set(urls)) != len(urls):
        raise ValueError("a webhook URL is listed twice")
    return urls
