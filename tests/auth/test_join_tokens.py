"""Join tokens: minted by the GC, checked by the MC; never interchangeable with service tokens."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from darktower.auth.errors import AuthenticationFailed, AuthError
from darktower.auth.join_tokens import (
    InvalidJoinToken,
    JoinTokenVerifier,
    WrongMeeting,
    mint_join_token,
)
from darktower.auth.tokens import SCOPE_MC, ServiceType, TokenVerifier, mint_service_token

GC = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()


def token(key: Ed25519PrivateKey = GC, **kw: object) -> str:
    values: dict[str, object] = {
        "meeting_id": "standup",
        "user_id": "u-1",
        "display_name": "Ada",
        "issuer": "gc-1",
    }
    values.update(kw)
    return mint_join_token(key, **values)


def verifier() -> JoinTokenVerifier:
    return JoinTokenVerifier([GC.public_key()])


def test_roundtrip() -> None:
    claims = verifier().verify(token(), meeting_id="standup")
    assert (claims.meeting_id, claims.user_id, claims.display_name) == ("standup", "u-1", "Ada")


def test_other_meeting_is_refused() -> None:
    with pytest.raises(WrongMeeting) as caught:
        verifier().verify(token(), meeting_id="other")
    assert isinstance(caught.value, AuthError)
    assert caught.value.code == "wrong_meeting"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "x" * 9000,
        "not.a.jwt",
        token(OTHER),
        token(ttl_seconds=-120),
        token()[:-4] + "AAAA",
        "!" + token(),  # the kid is read leniently to pick the key; PyJWT's parse refuses it
        "e30." + token().partition(".")[2],  # a header without kid or alg: {}
    ],
    ids=[
        "empty",
        "huge",
        "garbage",
        "unknown-key",
        "expired",
        "bad-signature",
        "junk-header",
        "no-kid",
    ],
)
def test_bad_tokens_are_refused_with_one_message(bad: str) -> None:
    with pytest.raises(InvalidJoinToken, match=r"^invalid join token$") as caught:
        verifier().verify(bad, meeting_id="standup")
    assert isinstance(caught.value, AuthError)
    assert caught.value.code == "invalid_join_token"


def test_a_token_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyJWT decodes each segment of a token character by character; the key is picked from a
    lenient look at the header, not from a second full parse (`get_unverified_header`)."""
    loads = 0
    load = jwt.api_jws.PyJWS._load

    def counted(self: jwt.api_jws.PyJWS, token: str | bytes) -> Any:
        nonlocal loads
        loads += 1
        return load(self, token)

    monkeypatch.setattr(jwt.api_jws.PyJWS, "_load", counted)
    assert verifier().verify(token(), meeting_id="standup").user_id == "u-1"
    assert loads == 1


def test_a_service_token_is_not_a_join_token_and_vice_versa() -> None:
    service = mint_service_token(
        GC, service_type=ServiceType.GLOBAL_CONTROLLER, scope=SCOPE_MC, issuer="gc-1"
    )
    with pytest.raises(InvalidJoinToken):
        verifier().verify(service)
    service_verifier = TokenVerifier(
        [GC.public_key()], required_scope=SCOPE_MC, allowed_callers={ServiceType.GLOBAL_CONTROLLER}
    )
    with pytest.raises(AuthenticationFailed):
        service_verifier.verify(token())


def test_long_display_names_are_cut() -> None:
    claims = verifier().verify(token(display_name="n" * 500, now=time.time()))
    assert len(claims.display_name) == 100
