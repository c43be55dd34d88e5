"""A meeting's participants: the roster as plain data, its Redis encoding, the host rule.

Stored in the meeting's state hash (`meeting:{<id>}:state`, see `darktower.fencing.keys`),
written only by the meeting's owner through fenced writes:

    p:<participant_id>  JSON {user_id, display_name, role, correlation_id, muted, host_muted,
                        connected, joined_at_ms, disconnected_at_ms}   one per participant
                        (role: "host" | "participant", granted by the access token; an entry
                        written before roles existed reads as "participant")
    host                the host's participant id (absent while the roster is empty)
    removed:<user_id>   when that identity was removed through the meeting API (Unix ms);
                        it may not join this meeting again (kept until the meeting ends)
    settings            JSON `darktower.common.meeting_settings.MeetingSettings`, the
                        settings the meeting was created with (meeting API), when it has any

A participant is in the roster while connected and, after its connection drops, for the
disconnect grace period; it is removed (field deleted) when it leaves or the grace runs out.

Host rule (`host_after_join`, `next_host`). The host role is granted by the access token
(`role: host`, carried to the MC in the GC's join token); the first joiner is host only while no
host-role participant is there (guests, tokens without the role):

* a join into an empty meeting (no host): the joiner becomes host, whatever its role;
* a host-role joiner while the host is not host-role: the joiner takes the host over (the
  first-joiner host was only standing in); while the host is host-role: nothing changes (the
  first host-role participant stays host, a second host-role joiner is an ordinary participant
  until then);
* any other join: nothing changes.

The host stays host through a disconnect within the grace period. When the host leaves for
good, the next is chosen among the connected ones first, host-role ones before the others,
each by presence (earliest `joined_at_ms`, ties by participant id); if none is connected, the
same order among those within their grace.

Returning user rule (`seat_to_reclaim`): a fresh join (no resumable session) by a user who
still has a disconnected entry in the roster takes that entry back instead of adding a second
one: same participant id, same place in the meeting (host role included), grace cancelled.
That is how a client whose binding token expired during an outage (a frozen MC, a failover
taking longer than the token's life) comes back as itself rather than next to its own ghost.
A connected entry of the same user is another live session (a second device or tab) and is
never taken. Of several disconnected entries of the user, the host's goes first, then the
longest present one.

The decisions here are pure; `MeetingActor` does the I/O.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

from darktower.common import clock
from darktower.signaling.protocol import Participant

__all__ = [
    "HOST_FIELD",
    "PARTICIPANT_PREFIX",
    "REMOVED_PREFIX",
    "SETTINGS_FIELD",
    "Member",
    "Roster",
    "host_after_join",
    "new_participant_id",
    "next_host",
    "participant_field",
    "seat_to_reclaim",
    "uuid7",
]

PARTICIPANT_PREFIX = "p:"
HOST_FIELD = "host"
REMOVED_PREFIX = "removed:"
SETTINGS_FIELD = "settings"


def uuid7(now_ms: int | None = None) -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version 7, 74 random bits."""
    ms = clock.now_ms() if now_ms is None else now_ms
    rand = secrets.randbits(74)
    value = (
        (ms & (2**48 - 1)) << 80
        | 0x7 << 76
        | (rand >> 62) << 64  # rand_a: 12 bits
        | 0b10 << 62  # the RFC 4122 / 9562 variant
        | (rand & (2**62 - 1))  # rand_b: 62 bits
    )
    return uuid.UUID(int=value)


def new_participant_id() -> str:
    """A short random id (12 hex digits), unique within a meeting in practice; callers
    still check for a collision."""
    return secrets.token_hex(6)


def participant_field(participant_id: str) -> str:
    return f"{PARTICIPANT_PREFIX}{participant_id}"


@dataclass(slots=True)
class Member:
    """One participant as the MC keeps it (`Participant` is what clients see)."""

    participant_id: str
    user_id: str
    display_name: str
    correlation_id: str
    joined_at_ms: int
    role: str = "participant"
    muted: bool = False
    host_muted: bool = False
    connected: bool = True
    disconnected_at_ms: int | None = None

    def to_json(self) -> str:
        data = asdict(self)
        del data["participant_id"]  # the field name carries it
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, participant_id: str, raw: str) -> Member:
        """ValueError when `raw` is not a member's JSON."""
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        if not all(isinstance(data.get(k), str) and data[k] for k in ("user_id", "correlation_id")):
            raise ValueError("missing ids")
        if not isinstance(data.get("display_name", ""), str):
            raise ValueError("display_name")
        flags = ("muted", "host_muted", "connected")
        if not all(isinstance(data.get(k, False), bool) for k in flags):
            raise ValueError("flags")
        role = data.get("role", "participant")
        if role not in ("host", "participant"):
            raise ValueError("role")
        joined, gone = data.get("joined_at_ms"), data.get("disconnected_at_ms")
        if not isinstance(joined, int) or not (gone is None or isinstance(gone, int)):
            raise ValueError("times")
        return cls(
            participant_id=participant_id,
            user_id=data["user_id"],
            display_name=data.get("display_name", ""),
            correlation_id=data["correlation_id"],
            joined_at_ms=joined,
            role=role,
            muted=data.get("muted", False),
            host_muted=data.get("host_muted", False),
            connected=data.get("connected", False),
            disconnected_at_ms=gone,
        )

    def public(self) -> Participant:
        return Participant(
            participant_id=self.participant_id,
            user_id=self.user_id,
            display_name=self.display_name,
            muted=self.muted,
            host_muted=self.host_muted,
            connected=self.connected,
        )


def next_host(members: Iterable[Member]) -> str | None:
    """The host after the current one left for good (see the module docstring)."""
    ranked = sorted(
        members,
        key=lambda m: (not m.connected, m.role != "host", m.joined_at_ms, m.participant_id),
    )
    return ranked[0].participant_id if ranked else None


def host_after_join(host: Member | None, joiner: Member) -> str:
    """The host once `joiner` joined a meeting whose host is `host` (None: no host yet)."""
    if host is None or (joiner.role == "host" and host.role != "host"):
        return joiner.participant_id
    return host.participant_id


def seat_to_reclaim(members: Iterable[Member], user_id: str, host_id: str | None) -> Member | None:
    """The disconnected entry of `user_id` that a fresh join by that user takes back, or None
    for a new participant (see "Returning user rule" in the module docstring)."""
    ghosts = [m for m in members if m.user_id == user_id and not m.connected]
    if not ghosts:
        return None
    return min(
        ghosts, key=lambda m: (m.participant_id != host_id, m.joined_at_ms, m.participant_id)
    )


@dataclass(slots=True)
class Roster:
    members: dict[str, Member] = field(default_factory=dict)
    host_id: str | None = None
    # participant id → (its visible state, its `Participant`): every join answer carries the
    # whole roster, so a 1000-person join storm would otherwise build a million models.
    _public: dict[str, tuple[tuple[object, ...], Participant]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @classmethod
    def from_state(cls, state: Mapping[str, str]) -> tuple[Roster, list[str]]:
        """The roster in a meeting's state hash, and the fields that could not be read."""
        roster, bad = cls(), []
        for name, raw in state.items():
            if not name.startswith(PARTICIPANT_PREFIX):
                continue
            participant_id = name[len(PARTICIPANT_PREFIX) :]
            try:
                roster.members[participant_id] = Member.from_json(participant_id, raw)
            except ValueError:
                bad.append(name)
        host = state.get(HOST_FIELD)
        roster.host_id = host if host in roster.members else next_host(roster.members.values())
        return roster, bad

    def __len__(self) -> int:
        return len(self.members)

    def get(self, participant_id: str) -> Member | None:
        return self.members.get(participant_id)

    def by_correlation(self, correlation_id: str) -> Member | None:
        for member in self.members.values():
            if member.correlation_id == correlation_id:
                return member
        return None

    def seat_to_reclaim(self, user_id: str) -> Member | None:
        return seat_to_reclaim(self.members.values(), user_id, self.host_id)

    def add(self, member: Member) -> bool:
        """Add a member; True when it became host (`host_after_join`)."""
        host = self.members.get(self.host_id) if self.host_id is not None else None
        self.members[member.participant_id] = member
        self.host_id = host_after_join(host, member)
        return self.host_id == member.participant_id

    def remove(self, participant_id: str) -> bool:
        """Remove a member for good; True when the host changed (see `next_host`)."""
        self.members.pop(participant_id, None)
        self._public.pop(participant_id, None)
        if self.host_id != participant_id:
            return False
        self.host_id = next_host(self.members.values())
        return True

    def participants(self) -> list[Participant]:
        ordered = sorted(self.members.values(), key=lambda m: (m.joined_at_ms, m.participant_id))
        cache, visible = self._public, []
        for m in ordered:
            state = (m.user_id, m.display_name, m.muted, m.host_muted, m.connected)
            known = cache.get(m.participant_id)
            if known is None or known[0] != state:
                known = cache[m.participant_id] = (state, m.public())
            visible.append(known[1])
        return visible

    def connected_count(self) -> int:
        return sum(1 for m in self.members.values() if m.connected)
