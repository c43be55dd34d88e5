"""RosterFrames: the encoded roster of join answers, reused from one join to the next.

Every join answer carries the roster (a `roster_delta` client: its first `ROSTER_PAGE`
participants, the rest in `roster_delta` pages right after). In a join storm each answer used
to encode the whole roster again: N joins, N² participants encoded. `Roster.participants()`
keeps each member's `Participant` object until its visible state changes, so a slice of the
roster whose objects are the very same as last time encodes to the very same text: this cache
keeps the text of each slice of ROSTER_PAGE participants (of the answer's roster array, and
each page) with the objects it was made of and reuses it while they are identical (`is`, in
the same order) — and, for a page, the host is the same. In a storm only the last, growing
slice is encoded again. The cache holds at most two slices per ROSTER_PAGE of the largest
roster the meeting had.

The answer itself (participant id, tokens, media) is encoded without its roster and the
cached array is put in place of the empty one: `"roster":[]` can only occur once in the
answer's JSON outside a string (a string's quotes are escaped), so the text is the one
`encode(answer)` gives (tests/mc/test_roster_frames.py checks that).
"""

from __future__ import annotations

from pydantic import TypeAdapter

from darktower.signaling.protocol import (
    ROSTER_PAGE,
    JoinAnswer,
    Participant,
    RosterDelta,
    encode,
)

__all__ = ["RosterFrames"]

_LIST = TypeAdapter(list[Participant])
_EMPTY = '"roster":[]'


class RosterFrames:
    __slots__ = ("_slices",)

    def __init__(self) -> None:
        # (kind, start) → (the participants it was made of, host id, the encoded text).
        self._slices: dict[tuple[str, int], tuple[list[Participant], str | None, str]] = {}

    def _cached(
        self, kind: str, start: int, part: list[Participant], host_id: str | None
    ) -> str | None:
        known = self._slices.get((kind, start))
        if known is None or known[1] != host_id or len(known[0]) != len(part):
            return None
        if all(a is b for a, b in zip(known[0], part, strict=True)):
            return known[2]
        return None

    def array(self, part: list[Participant]) -> str:
        """The JSON array of `part` (a roster from its start), from ROSTER_PAGE chunks."""
        chunks = []
        for start in range(0, len(part), ROSTER_PAGE):
            chunk = part[start : start + ROSTER_PAGE]
            text = self._cached("array", start, chunk, None)
            if text is None:
                text = _LIST.dump_json(chunk).decode()[1:-1]  # without its brackets
                self._slices[("array", start)] = (chunk, None, text)
            chunks.append(text)
        return f"[{','.join(chunks)}]"

    def page(self, start: int, part: list[Participant], host_id: str | None) -> str:
        """The `roster_delta` frame carrying `part` (the roster from index `start`)."""
        text = self._cached("page", start, part, host_id)
        if text is None:
            text = encode(RosterDelta(participants=part, left=[], host_id=host_id))
            self._slices[("page", start)] = (part, host_id, text)
        return text

    def answer(self, answer: JoinAnswer, *, paged: bool) -> list[str]:
        """`answer` encoded, then its pages: with `paged`, a roster of more than ROSTER_PAGE
        is cut into the answer's first page and `roster_delta` frames with the rest."""
        roster = answer.roster
        pages: list[str] = []
        first = roster
        update: dict[str, object] = {"roster": []}
        if paged and len(roster) > ROSTER_PAGE:
            first = roster[:ROSTER_PAGE]
            for start in range(ROSTER_PAGE, len(roster), ROSTER_PAGE):
                part = roster[start : start + ROSTER_PAGE]
                pages.append(self.page(start, part, answer.host_id))
            update["roster_pages"] = len(pages)
        head = encode(answer.model_copy(update=update))
        if head.count(_EMPTY) != 1:  # never (see the module docstring): encode it all
            return [encode(answer.model_copy(update=update | {"roster": first})), *pages]
        return [head.replace(_EMPTY, f'"roster":{self.array(first)}', 1), *pages]
