"""Every Redis key the fencing store touches, in one place.

All keys of one meeting carry the meeting id as a hash tag (`{<id>}`), so that under Redis
Cluster they live in one slot and a single Lua script may touch all of them.

    meeting:{<id>}:gen    string, a decimal integer ("1764000000000001"); the meeting's
                          fencing generation. Never deleted and never goes down: a later
                          acquire must always issue a higher number. Expires an hour after the
                          meeting ended (fenced_delete); acquire's clock term (Redis TIME in
                          µs) then keeps the next generation higher.
    meeting:{<id>}:owner  string, the id of the meeting controller holding the meeting
                          ("mc-eu-1"); absent when no MC holds it.
    meeting:{<id>}:mh     string, JSON: the ranked media-handler list and assigned_at, written
                          by the owner; the store treats it as opaque text.
    meeting:{<id>}:state  hash, field -> string; meeting state written by the owner.
    meeting:{<id>}:audit  stream of {gen, owner, op}; one entry per acquire and per applied
                          write, only when the store runs with `audit=True`. Never trimmed
                          or deleted by the store (a diagnostic and test aid, off by default).
    meeting:{<id>}:nonce:<hex>
                          string "1" with an expiry (SET NX EX); a session-binding token's
                          nonce (32 hex digits) that has been used once (`darktower.mc.binding`).
                          Written by any MC (not fenced: the secret is shared and a nonce is
                          spent wherever it is shown); gone when the token could no longer be
                          valid anyway. Not among the KEYS the fencing scripts receive.
    meeting:{<id>}:jti:<hex>
                          string "1" with an expiry (SET NX EX); a GC join token's `jti` (32
                          hex digits) that has been used for a join (`darktower.mc.join_once`),
                          kept for the rest of the token's life. Not fenced, like the nonces.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MeetingKeys", "binding_nonce_key", "join_token_key"]


@dataclass(frozen=True)
class MeetingKeys:
    """The Redis key names of one meeting; build with `MeetingKeys.for_meeting`."""

    meeting_id: str
    gen: str
    owner: str
    mh: str
    state: str
    audit: str

    @classmethod
    def for_meeting(cls, meeting_id: str) -> MeetingKeys:
        """Key names for `meeting_id`.

        Raises ValueError for an empty id or one containing `{` or `}`: a brace would end the
        hash tag early and scatter the meeting's keys over several cluster slots.
        """
        if not meeting_id:
            raise ValueError("meeting id must not be empty")
        if "{" in meeting_id or "}" in meeting_id:
            raise ValueError("meeting id must not contain '{' or '}'")
        prefix = f"meeting:{{{meeting_id}}}"
        return cls(
            meeting_id=meeting_id,
            gen=f"{prefix}:gen",
            owner=f"{prefix}:owner",
            mh=f"{prefix}:mh",
            state=f"{prefix}:state",
            audit=f"{prefix}:audit",
        )

    def nonce(self, nonce_hex: str) -> str:
        """The used-nonce key of one session-binding token (see `binding_nonce_key`)."""
        return binding_nonce_key(self.meeting_id, nonce_hex)

    @property
    def all(self) -> tuple[str, str, str, str, str]:
        """Every key of the meeting: gen, owner, mh, state, audit. Each script receives only
        the ones its contract header names (see `lua/`), the audit stream last and only when
        auditing."""
        return (self.gen, self.owner, self.mh, self.state, self.audit)


def binding_nonce_key(meeting_id: str, nonce_hex: str) -> str:
    """`meeting:{<id>}:nonce:<hex>`: in the meeting's slot, so it lives where the meeting does.

    Raises ValueError for a bad meeting id (as `MeetingKeys.for_meeting`) or a nonce that is
    not lower-case hex.
    """
    if not nonce_hex or any(c not in "0123456789abcdef" for c in nonce_hex):
        raise ValueError("nonce must be lower-case hex")
    MeetingKeys.for_meeting(meeting_id)  # the same checks on the id
    return f"meeting:{{{meeting_id}}}:nonce:{nonce_hex}"


def join_token_key(meeting_id: str, token_id: str) -> str:
    """`meeting:{<id>}:jti:<hex>`: a used join token's id, in the meeting's slot.

    Raises ValueError as `binding_nonce_key` does.
    """
    if not token_id or any(c not in "0123456789abcdef" for c in token_id):
        raise ValueError("a join token id must be lower-case hex")
    MeetingKeys.for_meeting(meeting_id)
    return f"meeting:{{{meeting_id}}}:jti:{token_id}"
