"""Who may use the meeting API (`darktower.gc.meeting_access.decide_meeting_access`): a table
over what a request shows, the meeting, the route's kind and whether guests are allowed."""

from __future__ import annotations

from typing import Literal

import pytest

from darktower.auth.access_tokens import AccessGrant, InvalidAccessToken
from darktower.gc.access import AccessRefused, NoToken, Presented
from darktower.gc.meeting_access import decide_meeting_access


def grant(
    *,
    admin: bool = False,
    role: Literal["host", "participant"] = "participant",
    meeting: str | None = "town",
) -> AccessGrant:
    return AccessGrant(
        key_id="APIkey",
        identity="ada",
        name=None,
        meeting_id=meeting,
        role=role,
        admin=admin,
        expires_at=2**40,
    )


ADMIN = grant(admin=True, meeting=None)
HOST = grant(role="host")
OTHER_HOST = grant(role="host", meeting="other")
PARTICIPANT = grant()


@pytest.mark.parametrize(
    ("presented", "host_may", "write", "guests", "outcome"),
    [
        # admin: everything
        (ADMIN, False, True, False, "ok"),
        (ADMIN, True, False, False, "ok"),
        # the meeting's host: host routes only
        (HOST, True, True, False, "ok"),
        (HOST, True, False, False, "ok"),
        (HOST, False, True, False, "admin_required"),
        (HOST, False, False, False, "admin_required"),
        # another meeting's host
        (OTHER_HOST, True, True, False, "wrong_meeting"),
        (OTHER_HOST, False, True, False, "admin_required"),
        # a participant
        (PARTICIPANT, True, True, False, "admin_required"),
        (PARTICIPANT, False, False, False, "admin_required"),
        # no token: refused, but reads are open while guests are allowed (as the operator reads)
        (NoToken(), True, False, False, "token_missing"),
        (NoToken(), True, False, True, "ok"),
        (NoToken(), True, True, True, "token_missing"),
        (NoToken(), False, True, True, "token_missing"),
        # guests allowed do not open changes to a participant's token
        (PARTICIPANT, True, True, True, "admin_required"),
        (PARTICIPANT, False, False, True, "ok"),
        # a bad token is refused whatever the route and the guests setting
        (InvalidAccessToken("token_expired", "expired"), True, False, True, "token_expired"),
        (InvalidAccessToken("token_invalid", "bad"), False, True, False, "token_invalid"),
    ],
)
def test_who_may_use_the_meeting_api(
    presented: Presented, host_may: bool, write: bool, guests: bool, outcome: str
) -> None:
    if outcome == "ok":
        decide_meeting_access(
            presented, "town", host_may=host_may, write=write, allow_guests=guests
        )
        return
    with pytest.raises(AccessRefused) as refused:
        decide_meeting_access(
            presented, "town", host_may=host_may, write=write, allow_guests=guests
        )
    assert refused.value.reason == outcome
    assert refused.value.status == (401 if outcome.startswith("token") else 403)


def test_a_host_token_cannot_act_on_the_whole_api() -> None:
    with pytest.raises(AccessRefused) as refused:
        decide_meeting_access(HOST, None, host_may=True, write=False, allow_guests=False)
    assert refused.value.reason == "admin_required"
