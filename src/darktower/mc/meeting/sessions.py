"""SessionTokens: a meeting's binding tokens (see `binding.py`) — checking the one a
reconnecting client shows, minting a fresh one for each join answer and pong.

Checking spends the token's nonce (Redis), so it runs only when the session the client names
is in the roster; its outcome is what `decide_join` is given.
"""

from __future__ import annotations

from darktower.mc.binding import InvalidBinding, SessionBinder
from darktower.mc.meeting.join import Reconnect
from darktower.mc.meeting.messages import JoinRequest
from darktower.mc.roster import Member, Roster
from darktower.signaling.protocol import JoinAnswer, Participant, Pong

__all__ = ["SessionTokens"]


class SessionTokens:
    __slots__ = ("_binder", "_meeting_id")

    def __init__(self, binder: SessionBinder, meeting_id: str) -> None:
        self._binder = binder
        self._meeting_id = meeting_id

    async def check(self, request: JoinRequest, roster: Roster) -> Reconnect | None:
        """The reconnect `request` claims, its binding token verified against the participant
        of the session it names; None for a join without a session to resume. Store errors
        of the nonce ledger propagate (StoreUnavailable)."""
        if request.correlation_id is None or request.binding_token is None:
            return None
        session = roster.by_correlation(request.correlation_id)
        if session is None:
            return Reconnect(request.correlation_id)  # expired: nothing to check it against
        try:
            await self._binder.verify(
                request.binding_token,
                meeting_id=self._meeting_id,
                correlation_id=request.correlation_id,
                participant_id=session.participant_id,
            )
        except InvalidBinding as exc:
            return Reconnect(request.correlation_id, exc.reason)
        return Reconnect(request.correlation_id)

    def join_answer(
        self,
        member: Member,
        roster: Roster,
        *,
        reconnected: bool,
        metadata: str | None = None,
        participants: list[Participant] | None = None,
    ) -> JoinAnswer:
        """`participants`: `roster.participants()` when the caller has it already."""
        return JoinAnswer(
            metadata=metadata,
            participant_id=member.participant_id,
            correlation_id=member.correlation_id,
            binding_token=self._mint(member),
            roster=roster.participants() if participants is None else participants,
            host_id=roster.host_id,
            reconnected=reconnected,
        )

    def pong(self, member: Member, nonce: str | None) -> Pong:
        """The answer to a ping: its nonce back, with a fresh binding token."""
        return Pong(nonce=nonce, binding_token=self._mint(member))

    def _mint(self, member: Member) -> str:
        return self._binder.mint(self._meeting_id, member.correlation_id, member.participant_id)
