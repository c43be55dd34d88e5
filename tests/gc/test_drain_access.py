"""Who may drain an MC (`darktower.gc.drain_api.decide_drain_access`): the admin grant only,
guests never (a drain is a write)."""

from __future__ import annotations

import pytest

from darktower.auth.access_tokens import AccessGrant, InvalidAccessToken
from darktower.gc.access import AccessRefused, NoToken, Presented
from darktower.gc.drain_api import decide_drain_access


def grant(*, admin: bool, role: str = "participant") -> AccessGrant:
    return AccessGrant(
        key_id="k-1",
        identity="ops",
        name=None,
        meeting_id=None,
        role="host" if role == "host" else "participant",
        admin=admin,
        expires_at=2_000_000_000,
    )


@pytest.mark.parametrize(
    ("presented", "status", "reason"),
    [
        (NoToken(), 401, "token_missing"),
        (InvalidAccessToken("token_invalid", "bad signature"), 401, "token_invalid"),
        (InvalidAccessToken("token_expired", "expired"), 401, "token_expired"),
        (InvalidAccessToken("unknown_key", "unknown key"), 401, "unknown_key"),
        (grant(admin=False), 403, "admin_required"),
        (grant(admin=False, role="host"), 403, "admin_required"),
    ],
)
def test_only_the_admin_grant_may_drain(presented: Presented, status: int, reason: str) -> None:
    with pytest.raises(AccessRefused) as refused:
        decide_drain_access(presented)
    assert (refused.value.status, refused.value.reason) == (status, reason)


def test_the_admin_grant_may_drain() -> None:
    admin = grant(admin=True)
    assert decide_drain_access(admin) is admin
