"""`darktower.webhooks.signature`: signing and verifying, and every way a signature is refused."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from darktower.webhooks.signature import (
    TOLERANCE_SECONDS,
    SignatureError,
    compute,
    sign,
    verify,
)

SECRET = "s3cret-for-the-signature-tests-0123456789abcdef"
OTHER = "another-secret-entirely-0123456789abcdefghijk"
BODY = b'{"id":"evt_1","seq":1,"type":"meeting_started","meeting_id":"standup"}'
NOW = 1_764_000_000


def test_the_signature_is_hmac_sha256_of_t_dot_body_in_hex() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY, timestamp=NOW) == f"t={NOW},v1={expected}"
    assert compute(SECRET, NOW, BODY) == expected


def test_a_fresh_signature_verifies_and_gives_its_time() -> None:
    header = sign(SECRET, BODY, timestamp=NOW)
    assert verify(SECRET, header, BODY, now=NOW) == NOW
    assert verify(SECRET, header, BODY, now=NOW + TOLERANCE_SECONDS) == NOW
    assert verify(SECRET, header, BODY, now=NOW - TOLERANCE_SECONDS) == NOW


def test_one_matching_v1_of_several_is_enough_while_a_key_rotates() -> None:
    header = sign([OTHER, SECRET], BODY, timestamp=NOW)
    assert header.count("v1=") == 2
    assert verify(SECRET, header, BODY, now=NOW) == NOW
    assert verify(OTHER, header, BODY, now=NOW) == NOW


def test_unknown_schemes_are_ignored_beside_v1() -> None:
    header = sign(SECRET, BODY, timestamp=NOW) + ",v2=abc"
    assert verify(SECRET, header, BODY, now=NOW) == NOW


GOOD = sign(SECRET, BODY, timestamp=NOW)
FORGED = f"t={NOW},v1={'0' * 64}"


@pytest.mark.parametrize(
    ("secret", "header", "body", "now", "reason"),
    [
        pytest.param(SECRET, None, BODY, NOW, "missing", id="no header"),
        pytest.param(SECRET, "", BODY, NOW, "missing", id="empty header"),
        pytest.param(SECRET, FORGED, BODY, NOW, "mismatch", id="forged"),
        pytest.param(OTHER, GOOD, BODY, NOW, "mismatch", id="wrong key"),
        pytest.param(SECRET, GOOD, BODY + b" ", NOW, "mismatch", id="tampered body"),
        pytest.param(
            SECRET, GOOD, BODY.replace(b'"seq":1', b'"seq":2'), NOW, "mismatch", id="tampered seq"
        ),
        pytest.param(
            SECRET, GOOD, BODY, NOW + TOLERANCE_SECONDS + 1, "stale", id="replayed after 5 min"
        ),
        pytest.param(SECRET, GOOD, BODY, NOW - TOLERANCE_SECONDS - 1, "future", id="from ahead"),
        pytest.param(
            SECRET,
            GOOD.replace(f"t={NOW}", f"t={NOW + 1}"),
            BODY,
            NOW,
            "mismatch",
            id="t moved to look fresh",
        ),
        pytest.param(SECRET, f"v1={'a' * 64}", BODY, NOW, "malformed", id="no t"),
        pytest.param(SECRET, f"t={NOW}", BODY, NOW, "malformed", id="no v1"),
        pytest.param(SECRET, f"t=-5,v1={'a' * 64}", BODY, NOW, "malformed", id="negative t"),
        pytest.param(SECRET, f"t=1e9,v1={'a' * 64}", BODY, NOW, "malformed", id="float t"),
        pytest.param(SECRET, f"t={NOW},t={NOW},v1={'a' * 64}", BODY, NOW, "malformed", id="two t"),
        pytest.param(SECRET, f"t={NOW},v1={'A' * 64}", BODY, NOW, "malformed", id="upper hex"),
        pytest.param(SECRET, f"t={NOW},v1=abc", BODY, NOW, "malformed", id="short v1"),
        pytest.param(SECRET, f"t={NOW},garbage", BODY, NOW, "malformed", id="no equals"),
        pytest.param(
            SECRET,
            f"t={NOW}," + ",".join([f"v1={'a' * 64}"] * 40),
            BODY,
            NOW,
            "malformed",
            id="oversized header",
        ),
        pytest.param(SECRET, f"t={'9' * 40},v1={'a' * 64}", BODY, NOW, "malformed", id="huge t"),
    ],
)
def test_refused_signatures_name_the_failed_check(
    secret: str, header: str | None, body: bytes, now: int, reason: str
) -> None:
    with pytest.raises(SignatureError) as refused:
        verify(secret, header, body, now=now)
    assert refused.value.reason == reason
    assert secret not in str(refused.value)
    assert compute(secret, now, body) not in str(refused.value)


def test_signing_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        sign([], BODY)
