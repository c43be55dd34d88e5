"""Seats: new participants taken into the roster together and recorded by one fenced write.

A join storm queues many joins in the meeting's mailbox; the actor takes a run of them at once
(`Actor.batch_types`) and `Participants.join_batch` reserves a seat for each new participant
here before anything is written. A reserved seat is in the roster at once, so it counts for
admission — the meeting's cap and the MC's — for the joins after it, in the batch or not:
admission stays exact. Then one fenced write records every seat of the batch (`mapping`); when
it fails or is fenced out, every seat is taken back (`rollback`) and no client of the batch has
been told anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from darktower.auth.join_tokens import JoinClaims
from darktower.common.clock import now_ms
from darktower.mc.connection import ConnectionActor
from darktower.mc.roster import (
    HOST_FIELD,
    Member,
    Roster,
    new_participant_id,
    participant_field,
    uuid7,
)
from darktower.signaling.protocol import ParticipantJoined

__all__ = ["Seat", "Seats", "announcements", "new_member"]


def new_member(claims: JoinClaims, roster: Roster) -> Member:
    """A new participant for the verified join `claims`, with an id `roster` does not have."""
    participant_id = new_participant_id()
    while participant_id in roster.members:  # 48 random bits: practically never
        participant_id = new_participant_id()
    return Member(
        participant_id=participant_id,
        user_id=claims.user_id,
        display_name=claims.display_name,
        role=claims.role,
        correlation_id=str(uuid7()),
        joined_at_ms=now_ms(),
    )


@dataclass(frozen=True, slots=True)
class Seat:
    """A reserved seat: the new member, its connection, its place in the batch (`index`) and
    whether its joiner took the host over from someone (`roster.host_after_join`)."""

    member: Member
    connection: ConnectionActor
    index: int
    took_over: bool


class Seats:
    """The seats reserved in `roster` since the last write; `host_before` is the host the
    roster had before the first of them (what a rollback puts back). `on_count()` is called
    whenever the roster's size changed (a seat reserved, seats taken back)."""

    __slots__ = ("_host_before", "_on_count", "_roster", "seats")

    def __init__(self, roster: Roster, on_count: Callable[[], None]) -> None:
        self._roster = roster
        self._on_count = on_count
        self._host_before = roster.host_id
        self.seats: list[Seat] = []

    def __bool__(self) -> bool:
        return bool(self.seats)

    def __len__(self) -> int:
        return len(self.seats)

    def reserve(self, member: Member, connection: ConnectionActor, index: int) -> None:
        """Put `member` in the roster (its seat counts from now on)."""
        roster = self._roster
        if not self.seats:
            self._host_before = roster.host_id
        previous = roster.host_id
        became_host = roster.add(member)
        self.seats.append(Seat(member, connection, index, became_host and previous is not None))
        self._on_count()

    def mapping(self) -> dict[str, str]:
        """The Redis fields recording every seat (and the host, when a seat changed it)."""
        mapping = {
            participant_field(s.member.participant_id): s.member.to_json() for s in self.seats
        }
        if self._roster.host_id != self._host_before and self._roster.host_id is not None:
            mapping[HOST_FIELD] = self._roster.host_id
        return mapping

    def rollback(self) -> None:
        """Take every seat back out of the roster, the host as it was before them."""
        if not self.seats:
            return
        for seat in reversed(self.seats):
            self._roster.remove(seat.member.participant_id)
        self._roster.host_id = self._host_before
        self.seats.clear()
        self._on_count()

    def take(self) -> list[Seat]:
        """The seats, recorded: forget them here."""
        seats, self.seats = self.seats, []
        return seats


def announcements(seats: list[Seat]) -> Iterator[tuple[ParticipantJoined, frozenset[str]]]:
    """What the others are told of recorded `seats`, each with whom it skips: the joiners of
    the batch, who learnt of each other from their join answers (one roster for all). A
    host-role joiner that took the host over says so (`host_id`; see `host_after_join`)."""
    batch = frozenset(seat.member.participant_id for seat in seats)
    for seat in seats:
        participant_id = seat.member.participant_id
        joined = ParticipantJoined(
            participant=seat.member.public(),
            host_id=participant_id if seat.took_over else None,
        )
        yield joined, batch
