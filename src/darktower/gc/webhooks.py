"""The GC's webhook delivery, wired from its settings (docs/webhooks.md).

`GcWebhooks.from_settings` answers None while `GC_WEBHOOK_URLS` is empty (webhooks off) and
raises `StartupError` for settings that cannot deliver: no `GC_WEBHOOK_KEY_FILE`, a bad key
file, no `GC_EVENTS_REDIS_URL`, a malformed Redis URL (the error never shows the URL). The
dispatcher runs as the supervised task `gc-webhooks`; `stop` gives its partition leases back.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from darktower.auth.api_keys import ApiKeyError, load_api_key_file
from darktower.gc.settings import GcSettings
from darktower.runtime.redis_connect import RedisLike, RedisUrlError, connect, describe
from darktower.runtime.serving import StartupError
from darktower.runtime.supervisor import TaskSupervisor
from darktower.webhooks.delivery import DeliverySettings, WebhookDispatcher
from darktower.webhooks.keys import PARTITIONS

__all__ = ["WEBHOOK_TASK", "GcWebhooks"]

log = logging.getLogger(__name__)

WEBHOOK_TASK: Final = "gc-webhooks"


class GcWebhooks:
    def __init__(self, redis: RedisLike, dispatcher: WebhookDispatcher, where: str) -> None:
        self.redis = redis
        self.dispatcher = dispatcher
        self._where = where
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"GcWebhooks({self.dispatcher!r})"

    @classmethod
    def from_settings(cls, s: GcSettings) -> GcWebhooks | None:
        if not s.webhook_urls:
            return None
        if s.webhook_key_file is None:
            raise StartupError("GC_WEBHOOK_URLS needs GC_WEBHOOK_KEY_FILE (the key that signs)")
        if s.events_redis_url is None:
            raise StartupError("GC_WEBHOOK_URLS needs GC_EVENTS_REDIS_URL (the MCs' Redis)")
        try:
            key = load_api_key_file(s.webhook_key_file)
        except ApiKeyError as exc:
            raise StartupError(f"GC_WEBHOOK_KEY_FILE: {exc}") from None
        url = s.events_redis_url.get_secret_value()
        try:
            # Each partition held runs one blocking reader per URL.
            redis = connect(
                url,
                socket_timeout=5.0,
                connect_timeout=2.0,
                max_connections=PARTITIONS * len(s.webhook_urls) + 8,
            )
            where = describe(url)
        except RedisUrlError as exc:
            raise StartupError(f"GC_EVENTS_REDIS_URL: {exc}") from None
        settings = DeliverySettings(
            urls=tuple(s.webhook_urls),
            key_id=key.key_id,
            secret=key.secret,
            timeout_seconds=s.webhook_timeout_seconds,
            retry_cap_seconds=s.webhook_retry_cap_seconds,
            lease_seconds=s.webhook_lease_seconds,
        )
        return cls(redis, WebhookDispatcher(redis, settings, holder=s.id), where)

    def start(self, tasks: TaskSupervisor) -> None:
        self._task = tasks.spawn(WEBHOOK_TASK, self.dispatcher.run())
        log.info(
            "webhooks: delivering to %d URL(s) from the events in redis %s",
            len(self.dispatcher.urls),
            self._where,
        )

    async def stop(self) -> None:
        """Stop the loop, its workers, give the leases back. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # A crash was reported by the supervisor already: not raised again here.
            await asyncio.gather(task, return_exceptions=True)
        await self.dispatcher.stop()
        await self.redis.aclose()
