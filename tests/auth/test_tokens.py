"""Minting and verifying service tokens: the roundtrip and one row per failure reason."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from darktower.auth.errors import (
    FAILURE_REASONS,
    AuthenticationFailed,
    CallerNotAllowed,
    FailureReason,
)
from darktower.auth.keys import key_id
from darktower.auth.tokens import (
    MAX_TOKEN_BYTES,
    SCOPE_GC,
    SCOPE_MC,
    SERVICE_PROFILES,
    ServiceClaims,
    ServiceType,
    TokenVerifier,
    mint_service_token,
)

GC_KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()  # trusted by nobody


def mc_verifier(*extra_trusted: Ed25519PrivateKey) -> TokenVerifier:
    """What an MC runs: trusts the GC key, serves only the GC."""
    return TokenVerifier(
        [GC_KEY.public_key(), *(k.public_key() for k in extra_trusted)],
        required_scope=SCOPE_MC,
        allowed_callers={ServiceType.GLOBAL_CONTROLLER},
    )


def gc_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "gc-1",
        "iat": now,
        "exp": now + 300,
        "service_type": "global-controller",
        "scope": SCOPE_MC,
    }
    for name, value in overrides.items():
        if value is _DROP:
            del claims[name]
        else:
            claims[name] = value
    return claims


_DROP = object()


def encode(
    claims: dict[str, Any], key: Ed25519PrivateKey = GC_KEY, *, kid: str | None = "auto"
) -> str:
    headers = {} if kid is None else {"kid": key_id(key.public_key()) if kid == "auto" else kid}
    return jwt.encode(claims, key, algorithm="EdDSA", headers=headers)


def test_mint_verify_roundtrip() -> None:
    before = int(time.time())
    token = mint_service_token(
        GC_KEY, service_type=ServiceType.GLOBAL_CONTROLLER, scope=SCOPE_MC, issuer="gc-1"
    )

    claims = mc_verifier().verify(token)

    assert claims == ServiceClaims(
        issuer="gc-1",
        service_type=ServiceType.GLOBAL_CONTROLLER,
        scope=SCOPE_MC,
        issued_at=claims.issued_at,
        expires_at=claims.issued_at + 300,
    )
    assert before <= claims.issued_at <= int(time.time())
    assert jwt.get_unverified_header(token)["kid"] == key_id(GC_KEY.public_key())


def test_mint_uses_given_now_and_ttl() -> None:
    token = mint_service_token(
        GC_KEY,
        service_type=ServiceType.GLOBAL_CONTROLLER,
        scope=SCOPE_MC,
        issuer="gc-1",
        ttl_seconds=60,
        now=time.time() - 10.7,
    )
    claims = mc_verifier().verify(token)
    assert claims.expires_at - claims.issued_at == 60


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"issuer": ""}, "issuer"), ({"ttl_seconds": 0}, "ttl"), ({"ttl_seconds": -5}, "ttl")],
)
def test_mint_refuses_nonsense(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"issuer": "gc-1", "ttl_seconds": 300, **kwargs}
    with pytest.raises(ValueError, match=match):
        mint_service_token(
            GC_KEY, service_type=ServiceType.GLOBAL_CONTROLLER, scope=SCOPE_MC, **args
        )


def test_verifier_without_kid_tries_every_trusted_key() -> None:
    token = encode(gc_claims(), OTHER_KEY, kid=None)
    assert mc_verifier(OTHER_KEY).verify(token).issuer == "gc-1"


def test_expiry_within_leeway_is_accepted() -> None:
    now = int(time.time())
    token = encode(gc_claims(iat=now - 310, exp=now - 10))  # 10 s past, leeway 30 s
    assert mc_verifier().verify(token).expires_at == now - 10


def _tampered_payload() -> str:
    header, _, signature = encode(gc_claims()).split(".")
    forged = encode(gc_claims(iss="someone-else")).split(".")[1]
    return f"{header}.{forged[:-2]}AA.{signature}"


def _hs256() -> str:
    return jwt.encode(gc_claims(), "k" * 64, algorithm="HS256")


def _alg_none() -> str:
    return jwt.encode(gc_claims(), "", algorithm="none")


# One row per way a token can be bad; every FailureReason that verify() can produce appears.
FAILURES: list[tuple[str, Callable[[], str], FailureReason]] = [
    ("empty", lambda: "", "empty"),
    ("over-size", lambda: "a" * (MAX_TOKEN_BYTES + 1), "too_large"),
    ("over-size-multibyte", lambda: "é" * (MAX_TOKEN_BYTES // 2 + 1), "too_large"),
    ("not-a-jwt", lambda: "not-a-jwt", "malformed"),
    ("max-size-garbage", lambda: "a" * MAX_TOKEN_BYTES, "malformed"),
    ("bad-base64", lambda: "e30.e30.###", "malformed"),
    ("hs256", _hs256, "malformed"),
    ("alg-none", _alg_none, "malformed"),
    ("kid-not-string", lambda: _raw_jws({"alg": "EdDSA", "kid": 7}), "malformed"),
    ("unknown-kid", lambda: encode(gc_claims(), OTHER_KEY), "unknown_key"),
    (
        "trusted-kid-foreign-key",
        lambda: encode(gc_claims(), OTHER_KEY, kid=key_id(GC_KEY.public_key())),
        "bad_signature",
    ),
    ("no-kid-foreign-key", lambda: encode(gc_claims(), OTHER_KEY, kid=None), "bad_signature"),
    ("tampered-payload", _tampered_payload, "bad_signature"),
    (
        "expired",
        lambda: encode(gc_claims(iat=int(time.time()) - 400, exp=int(time.time()) - 100)),
        "expired",
    ),
    ("wrong-scope", lambda: encode(gc_claims(scope=SCOPE_GC)), "wrong_scope"),
    ("no-scope", lambda: encode(gc_claims(scope=_DROP)), "wrong_scope"),
    ("scope-list", lambda: encode(gc_claims(scope=[SCOPE_MC])), "wrong_scope"),
    ("unknown-type", lambda: encode(gc_claims(service_type="recorder")), "bad_claims"),
    ("type-list", lambda: encode(gc_claims(service_type=["x"])), "bad_claims"),
    ("no-type", lambda: encode(gc_claims(service_type=_DROP)), "bad_claims"),
    ("no-iss", lambda: encode(gc_claims(iss=_DROP)), "bad_claims"),
    ("empty-iss", lambda: encode(gc_claims(iss="")), "bad_claims"),
    ("no-iat", lambda: encode(gc_claims(iat=_DROP)), "bad_claims"),
    ("no-exp", lambda: encode(gc_claims(exp=_DROP)), "bad_claims"),
    ("float-exp", lambda: encode(gc_claims(exp=time.time() + 300)), "bad_claims"),
    ("iat-in-future", lambda: encode(gc_claims(iat=int(time.time()) + 3600)), "bad_claims"),
]


def _raw_jws(header: dict[str, Any]) -> str:
    """A validly signed JWS with a header PyJWT itself would refuse to produce."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(gc_claims()).encode())}"
    return f"{signing_input}.{b64(GC_KEY.sign(signing_input.encode()))}"


@pytest.mark.parametrize(
    ("make_token", "reason"), [pytest.param(m, r, id=i) for i, m, r in FAILURES]
)
def test_each_bad_token_fails_with_its_reason(
    make_token: Callable[[], str], reason: FailureReason
) -> None:
    token = make_token()

    with pytest.raises(AuthenticationFailed) as info:
        mc_verifier().verify(token)

    assert info.value.reason == reason
    assert info.value.code == reason
    if token:
        assert token not in str(info.value)


def test_failure_table_covers_every_reason_verify_can_give() -> None:
    # missing and bad_prefix are about the header, checked in the interceptor.
    verify_reasons = set(FAILURE_REASONS) - {"missing", "bad_prefix"}
    assert {reason for _, _, reason in FAILURES} == verify_reasons


def test_size_limit_is_checked_before_parsing() -> None:
    # Same garbage on both sides of the limit: only the length differs, and decides the reason.
    at_limit = "a" * MAX_TOKEN_BYTES
    with pytest.raises(AuthenticationFailed) as ok_size:
        mc_verifier().verify(at_limit)
    with pytest.raises(AuthenticationFailed) as too_big:
        mc_verifier().verify(at_limit + "a")
    assert ok_size.value.reason == "malformed"
    assert too_big.value.reason == "too_large"


@pytest.mark.parametrize("service", ["mc", "mh"])
def test_valid_token_of_another_caller_type_is_not_allowed(service: str) -> None:
    service_type, _ = SERVICE_PROFILES[service]
    key = Ed25519PrivateKey.generate()
    token = mint_service_token(key, service_type=service_type, scope=SCOPE_MC, issuer=service)

    with pytest.raises(CallerNotAllowed) as info:
        mc_verifier(key).verify(token)

    assert info.value.service_type is service_type
    assert info.value.code == "wrong_caller"
    assert service_type.value in str(info.value)
    assert token not in str(info.value)


def test_gc_verifier_admits_mc_and_mh() -> None:
    mc_key, mh_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    verifier = TokenVerifier(
        [mc_key.public_key(), mh_key.public_key()],
        required_scope=SCOPE_GC,
        allowed_callers=[ServiceType.MEETING_CONTROLLER, ServiceType.MEDIA_HANDLER],
    )
    for name, key in (("mc", mc_key), ("mh", mh_key)):
        service_type, scope = SERVICE_PROFILES[name]
        token = mint_service_token(key, service_type=service_type, scope=scope, issuer=name)
        assert verifier.verify(token).service_type is service_type


def test_service_profiles_pair_each_caller_with_the_scope_of_its_callee() -> None:
    assert SERVICE_PROFILES == {
        "gc": (ServiceType.GLOBAL_CONTROLLER, SCOPE_MC),
        "mc": (ServiceType.MEETING_CONTROLLER, SCOPE_GC),
        "mh": (ServiceType.MEDIA_HANDLER, SCOPE_GC),
    }


@pytest.mark.parametrize(
    ("keys", "callers", "leeway", "match"),
    [
        ([], {ServiceType.GLOBAL_CONTROLLER}, 30, "trusted public key"),
        ([GC_KEY.public_key()], set(), 30, "allowed caller"),
        ([GC_KEY.public_key()], {ServiceType.GLOBAL_CONTROLLER}, -1, "leeway"),
    ],
)
def test_verifier_refuses_a_bad_configuration(
    keys: list[Any], callers: set[ServiceType], leeway: int, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        TokenVerifier(keys, required_scope=SCOPE_MC, allowed_callers=callers, leeway_seconds=leeway)


def test_unknown_failure_reason_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown authentication failure reason"):
        AuthenticationFailed("nope")


def _keyed_verifier() -> tuple[TokenVerifier, Ed25519PrivateKey, Ed25519PrivateKey]:
    mc_key, mh_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    verifier = TokenVerifier.from_key_sets(
        {
            ServiceType.MEETING_CONTROLLER: [mc_key.public_key()],
            ServiceType.MEDIA_HANDLER: [mh_key.public_key()],
        },
        required_scope=SCOPE_GC,
        allowed_callers={ServiceType.MEETING_CONTROLLER},
    )
    return verifier, mc_key, mh_key


def test_key_sets_bind_each_key_to_its_service_type() -> None:
    verifier, mc_key, mh_key = _keyed_verifier()
    mc_token = mint_service_token(
        mc_key, service_type=ServiceType.MEETING_CONTROLLER, scope=SCOPE_GC, issuer="mc-1"
    )
    assert verifier.verify(mc_token).service_type is ServiceType.MEETING_CONTROLLER
    # A genuine MH token: valid, but not an allowed caller → PERMISSION_DENIED at the edge.
    mh_token = mint_service_token(
        mh_key, service_type=ServiceType.MEDIA_HANDLER, scope=SCOPE_GC, issuer="mh-1"
    )
    with pytest.raises(CallerNotAllowed):
        verifier.verify(mh_token)
    # An MH key signing a token that claims to be an MC's is a forgery, not a caller mix-up.
    forged = mint_service_token(
        mh_key, service_type=ServiceType.MEETING_CONTROLLER, scope=SCOPE_GC, issuer="mh-1"
    )
    with pytest.raises(AuthenticationFailed) as raised:
        verifier.verify(forged)
    assert raised.value.reason == "bad_claims"


def test_one_key_cannot_be_trusted_for_two_types() -> None:
    key = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(ValueError, match="two service types"):
        TokenVerifier.from_key_sets(
            {ServiceType.MEETING_CONTROLLER: [key], ServiceType.MEDIA_HANDLER: [key]},
            required_scope=SCOPE_GC,
            allowed_callers={ServiceType.MEETING_CONTROLLER},
        )
