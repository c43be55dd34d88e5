"""The client's view of the roster: what each roster frame from the MC changes in it.

A session joins with the `roster_delta` feature, so the MC batches roster changes into
`roster_delta` frames (`darktower.signaling.protocol`). `apply_delta` turns one into the
per-participant events a v1 client would have had — `participant_joined` for someone new,
`participant_updated` for someone known, `participant_left` — so that `ClientSession.events()`
reads the same whichever the MC sent. `merge_pages` completes a paged join answer.
"""

from __future__ import annotations

from darktower.signaling.protocol import (
    JoinAnswer,
    Participant,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantUpdated,
    RosterDelta,
)

__all__ = ["apply_delta", "merge_pages"]


def apply_delta(
    roster: dict[str, Participant], delta: RosterDelta, me: str | None
) -> list[ParticipantJoined | ParticipantUpdated | ParticipantLeft]:
    """Apply `delta` to `roster` (in place); the events it amounts to. A departure of `me`
    is not applied here: the MC tells a client of its own departure with `participant_left`."""
    events: list[ParticipantJoined | ParticipantUpdated | ParticipantLeft] = []
    for p in delta.participants:
        known = roster.get(p.participant_id)
        roster[p.participant_id] = p
        if known is None:
            took_host = delta.host_id == p.participant_id
            events.append(
                ParticipantJoined(participant=p, host_id=p.participant_id if took_host else None)
            )
        elif known != p:
            events.append(ParticipantUpdated(participant=p))
    for gone in delta.left:
        if gone.participant_id == me:
            continue
        if roster.pop(gone.participant_id, None) is not None:
            events.append(
                ParticipantLeft(
                    participant_id=gone.participant_id, reason=gone.reason, host_id=delta.host_id
                )
            )
    return events


def merge_pages(answer: JoinAnswer, pages: list[RosterDelta]) -> JoinAnswer:
    """`answer` with the rest of its roster from the `roster_delta` pages that followed it."""
    roster = {p.participant_id: p for p in answer.roster}
    host_id = answer.host_id
    for page in pages:
        for p in page.participants:
            roster[p.participant_id] = p
        for gone in page.left:
            roster.pop(gone.participant_id, None)
        host_id = page.host_id
    return answer.model_copy(
        update={"roster": list(roster.values()), "host_id": host_id, "roster_pages": 0}
    )
