"""A meeting's settings (the GC's `POST /v1/meetings`): the rule both services check, and the
form they are kept in.

    max_participants        1..MAX_PARTICIPANTS_SETTING; the MC caps it further by its own
                            MC_MAX_PARTICIPANTS_PER_MEETING
    empty_timeout_seconds   1..MAX_EMPTY_TIMEOUT_SECONDS: the meeting ends this long after
                            nobody is connected (also when nobody ever joined)
    metadata                at most MAX_METADATA_BYTES bytes of UTF-8, opaque to darktower,
                            handed to every client in its `join_answer`

Each is optional: None means "the MC's default". On the wire (`pb.MeetingSettings`) None is 0
or the empty string; in Redis (the meeting's state hash, field `settings`) it is compact JSON
written by the meeting's owner, so that an MC taking the meeting over after a failover or a
migration enforces the same settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from darktower.common.errors import InvalidField

__all__ = [
    "MAX_EMPTY_TIMEOUT_SECONDS",
    "MAX_METADATA_BYTES",
    "MAX_PARTICIPANTS_SETTING",
    "MeetingSettings",
    "validate_settings",
]

MAX_METADATA_BYTES = 4096
MAX_PARTICIPANTS_SETTING = 100_000
MAX_EMPTY_TIMEOUT_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class MeetingSettings:
    max_participants: int | None = None
    empty_timeout_seconds: int | None = None
    metadata: str | None = None

    @property
    def empty(self) -> bool:
        return self == MeetingSettings()

    def to_json(self) -> str:
        return json.dumps(
            {
                "max_participants": self.max_participants,
                "empty_timeout_seconds": self.empty_timeout_seconds,
                "metadata": self.metadata,
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, raw: str) -> MeetingSettings:
        """The settings stored as `raw`; InvalidField (a ValueError) when they break the rule."""
        try:
            data = json.loads(raw)
        except ValueError:
            raise InvalidField("settings", "not JSON") from None
        if not isinstance(data, dict):
            raise InvalidField("settings", "not an object")
        return validate_settings(
            data.get("max_participants"),
            data.get("empty_timeout_seconds"),
            data.get("metadata"),
        )


def _bounded(value: object, field: str, top: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(field, "must be an integer")
    if not 1 <= value <= top:
        raise InvalidField(field, f"must be between 1 and {top}")
    return value


def validate_settings(
    max_participants: object, empty_timeout_seconds: object, metadata: object
) -> MeetingSettings:
    """The settings, or InvalidField naming the first field that breaks the rule."""
    cap = _bounded(max_participants, "max_participants", MAX_PARTICIPANTS_SETTING)
    timeout = _bounded(empty_timeout_seconds, "empty_timeout_seconds", MAX_EMPTY_TIMEOUT_SECONDS)
    if metadata is not None:
        if not isinstance(metadata, str):
            raise InvalidField("metadata", "must be a string")
        if len(metadata.encode("utf-8", "surrogatepass")) > MAX_METADATA_BYTES:
            raise InvalidField("metadata", f"at most {MAX_METADATA_BYTES} bytes")
        try:
            metadata.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidField("metadata", "must be valid UTF-8 text") from None
    return MeetingSettings(cap, timeout, metadata)
