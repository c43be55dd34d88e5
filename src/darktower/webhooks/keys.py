"""Every Redis key of the webhook outbox, in one place.

Events are partitioned by meeting over `PARTITIONS` streams; a meeting's events always go to
the same partition (`partition_of`), and every key of one partition carries the partition
number as its hash tag, so under Redis Cluster a partition's keys share one slot and
`emit.lua` touches the stream and the meeting's counter atomically. (The meeting's own
`meeting:{<id>}:*` keys live in another slot, so the counter cannot sit beside them and be
updated in the same script as the stream.)

    dt:events:{<p>}                  stream, one entry per event: field `e` = the event's JSON
                                     body (exactly the bytes delivered). Trimmed by time
                                     (XADD MINID ~, `OutboxSettings.retention_seconds`).
                                     One consumer group per webhook URL (`group_name`).
    dt:events:{<p>}:m:<meeting_id>   hash: `seq` (the meeting's last event number), `mc` and
                                     `gen` (the MC and fencing generation that emitted the
                                     last meeting_started/moved), `ended` ("1" once ended).
                                     Expires `COUNTER_TTL_SECONDS` after the meeting's last
                                     event; `seq` then starts again at 1.
    dt:events:{<p>}:lease            string with an expiry: the id of the GC process that
                                     delivers partition p right now (SET NX PX, renewed).
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Final

__all__ = [
    "COUNTER_TTL_SECONDS",
    "PARTITIONS",
    "group_name",
    "lease_key",
    "meeting_key",
    "partition_of",
    "stream_key",
]

PARTITIONS: Final = 16
"""Fixed: a meeting's partition must not change while its events are undelivered."""
COUNTER_TTL_SECONDS: Final = 8 * 24 * 3600


def partition_of(meeting_id: str) -> int:
    """The partition of a meeting's events (CRC-32 of its id, modulo PARTITIONS)."""
    return zlib.crc32(meeting_id.encode("utf-8")) % PARTITIONS


def stream_key(partition: int) -> str:
    return f"dt:events:{{{partition}}}"


def meeting_key(partition: int, meeting_id: str) -> str:
    return f"dt:events:{{{partition}}}:m:{meeting_id}"


def lease_key(partition: int) -> str:
    return f"dt:events:{{{partition}}}:lease"


def group_name(url: str) -> str:
    """The consumer group of one webhook URL: a digest, so that a URL's credentials or query
    never appear in Redis."""
    return "wh-" + hashlib.sha256(url.encode("utf-8")).hexdigest()[:24]
