"""Who may use the meeting API (README "Application API"): a pure decision over what the
request's access token shows (`darktower.gc.access`).

    admin token                 every route, every meeting
    host token (role host)      the routes marked `host`, for the meeting its `meeting` claim
                                names: reading the meeting and its participants, muting
    any other token             403 admin_required (a host token for another meeting: 403
                                wrong_meeting)
    no token                    401 token_missing — except the reads (`write=False`) while
                                guests are allowed (a dev fleet), as for the operator reads

Changing a meeting (create, end, remove, mute) always needs a token, even with guests allowed.
A token that is present but bad is refused whatever the route (401 with the token's reason).
"""

from __future__ import annotations

from darktower.auth.access_tokens import AccessGrant, InvalidAccessToken
from darktower.gc.access import AccessRefused, NoToken, Presented

__all__ = ["decide_meeting_access"]


def decide_meeting_access(
    presented: Presented,
    meeting_id: str | None,
    *,
    host_may: bool,
    write: bool,
    allow_guests: bool,
) -> AccessGrant | None:
    """The grant that may do it (None: a guest's read), or AccessRefused. `meeting_id`: the
    meeting the route acts on (None: the whole API, e.g. the listing)."""
    match presented:
        case NoToken():
            if allow_guests and not write:
                return None
            raise AccessRefused(401, "token_missing", "an access token is required (Bearer)")
        case InvalidAccessToken():
            raise AccessRefused(401, presented.reason, str(presented))
        case AccessGrant():
            pass
    if presented.admin:
        return presented
    if allow_guests and not write:
        return presented
    if host_may and presented.role == "host" and meeting_id is not None:
        if presented.meeting_id == meeting_id:
            return presented
        raise AccessRefused(403, "wrong_meeting", "the access token is for another meeting")
    raise AccessRefused(403, "admin_required", "this needs an access token with admin")
