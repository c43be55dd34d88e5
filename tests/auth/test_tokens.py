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
from darktower.auth.keys import TrustedKey, key_id
from darktower.auth.tokens import (
    ALLOW_UNBOUND_KEYS_DEFAULT,
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
LEGACY_KEY = Ed25519PrivateKey.generate()  # trusted, but bound to no instance
TEN_YEARS = 10 * 365 * 24 * 3600


def mc_verifier(*extra_trusted: Ed25519PrivateKey) -> TokenVerifier:
    """What an MC runs: trusts the GC key, serves only the GC."""
    return TokenVerifier(
        [GC_KEY.public_key(), *(k.public_key() for k in extra_trusted)],
        required_scope=SCOPE_MC,
        allowed_callers={ServiceType.GLOBAL_CONTROLLER},
        allow_unbound_keys=True,
    )


def strict_verifier() -> TokenVerifier:
    """What an MC will run once the follow-up switches the checks on: the GC key bound to
    gc-1, a legacy key it does not accept, tokens only for mc-1."""
    return TokenVerifier(
        [
            TrustedKey.bound(GC_KEY.public_key(), ServiceType.GLOBAL_CONTROLLER, "gc-1"),
            TrustedKey.unbound(LEGACY_KEY.public_key()),
        ],
        required_scope=SCOPE_MC,
        allowed_callers={ServiceType.GLOBAL_CONTROLLER},
        audience="mc-1",
        allow_unbound_keys=False,
    )


def gc_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "gc-1",
        "sub": "gc-1",
        "aud": "mc-1",
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
        subject="gc-1",
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
    token = encode(gc_claims(iat=now - 303, exp=now - 3))  # 3 s past, leeway 5 s
    assert mc_verifier().verify(token).expires_at == now - 3


def test_expiry_beyond_the_5_s_leeway_is_refused() -> None:
    now = int(time.time())
    token = encode(gc_claims(iat=now - 308, exp=now - 8))
    with pytest.raises(AuthenticationFailed) as info:
        mc_verifier().verify(token)
    assert info.value.reason == "expired"


@pytest.mark.parametrize("leeway", [-1, 6, 30])
def test_leeway_is_at_most_5_s(leeway: int) -> None:
    with pytest.raises(ValueError, match="leeway"):
        TokenVerifier(
            [GC_KEY.public_key()],
            required_scope=SCOPE_MC,
            allowed_callers={ServiceType.GLOBAL_CONTROLLER},
            leeway_seconds=leeway,
            allow_unbound_keys=True,
        )


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
    ("scope-json-list", lambda: encode(gc_claims(scope=[SCOPE_MC])), "wrong_scope"),
    ("scope-set-without", lambda: encode(gc_claims(scope=f"{SCOPE_GC} x:y")), "wrong_scope"),
    ("scope-prefix", lambda: encode(gc_claims(scope=f"{SCOPE_MC}x")), "wrong_scope"),
    ("scope-comma", lambda: encode(gc_claims(scope=f"{SCOPE_MC},x")), "wrong_scope"),
    ("ten-years", lambda: encode(gc_claims(exp=int(time.time()) + TEN_YEARS)), "too_long_lived"),
    ("exp-10^30", lambda: encode(gc_claims(exp=10**30)), "too_long_lived"),
    ("601-s", lambda: encode(gc_claims(exp=int(time.time()) + 601)), "too_long_lived"),
    (
        "exp-before-iat",
        lambda: encode(gc_claims(iat=int(time.time()), exp=int(time.time()) - 1)),
        "bad_claims",
    ),
    ("other-aud", lambda: encode(gc_claims(aud="mc-2")), "wrong_audience"),
    ("no-aud", lambda: encode(gc_claims(aud=_DROP)), "wrong_audience"),
    ("aud-list-without", lambda: encode(gc_claims(aud=["mc-2", "mc-3"])), "wrong_audience"),
    ("aud-not-string", lambda: encode(gc_claims(aud=7)), "bad_claims"),
    ("unbound-key", lambda: encode(gc_claims(), LEGACY_KEY), "unbound_key"),
    ("sub-mismatch", lambda: encode(gc_claims(sub="gc-2")), "wrong_subject"),
    ("iss-as-other-instance", lambda: encode(gc_claims(iss="gc-2", sub="gc-2")), "wrong_subject"),
    ("no-sub", lambda: encode(gc_claims(sub=_DROP)), "bad_claims"),
    ("sub-not-string", lambda: encode(gc_claims(sub=7)), "bad_claims"),
    (
        "type-other-than-key",
        lambda: encode(gc_claims(service_type="meeting-controller")),
        "bad_claims",
    ),
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
        strict_verifier().verify(token)

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
        allow_unbound_keys=True,
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
        TokenVerifier(
            keys,
            required_scope=SCOPE_MC,
            allowed_callers=callers,
            leeway_seconds=leeway,
            allow_unbound_keys=True,
        )


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
        allow_unbound_keys=True,
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
            allow_unbound_keys=True,
        )


def test_a_strict_verifier_admits_the_right_token() -> None:
    token = mint_service_token(
        GC_KEY,
        service_type=ServiceType.GLOBAL_CONTROLLER,
        scope=f"{SCOPE_MC} internal:meeting-token",
        issuer="gc-1",
        audience="mc-1",
    )

    claims = strict_verifier().verify(token)

    assert (claims.subject, claims.audience, claims.scope) == ("gc-1", ("mc-1",), SCOPE_MC)


@pytest.mark.parametrize(
    "scope",
    [SCOPE_MC, f"{SCOPE_MC} internal:meeting-token", f"internal:meeting-token {SCOPE_MC}"],
)
def test_scope_is_a_set_that_must_contain_the_required_scope(scope: str) -> None:
    assert strict_verifier().verify(encode(gc_claims(scope=scope))).scope == SCOPE_MC


@pytest.mark.parametrize("aud", ["mc-1", ["mc-9", "mc-1"]])
def test_audience_may_be_one_id_or_a_list_containing_ours(aud: str | list[str]) -> None:
    assert "mc-1" in strict_verifier().verify(encode(gc_claims(aud=aud))).audience


def test_a_verifier_may_accept_several_audiences() -> None:
    verifier = TokenVerifier(
        [GC_KEY.public_key()],
        required_scope=SCOPE_MC,
        allowed_callers={ServiceType.GLOBAL_CONTROLLER},
        audience=["gc-1", "gc-fleet"],
        allow_unbound_keys=True,
    )
    assert verifier.verify(encode(gc_claims(aud="gc-fleet"))).audience == ("gc-fleet",)


def test_without_a_required_audience_aud_is_not_checked() -> None:
    assert mc_verifier().verify(encode(gc_claims(aud="mc-2"))).audience == ("mc-2",)
    assert mc_verifier().verify(encode(gc_claims(aud=_DROP))).audience == ()


def test_mint_sets_sub_from_subject_or_issuer_and_aud_only_when_given() -> None:
    def payload(**kwargs: Any) -> dict[str, Any]:
        token = mint_service_token(
            GC_KEY, service_type=ServiceType.GLOBAL_CONTROLLER, scope=SCOPE_MC, **kwargs
        )
        decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        return decoded

    assert payload(issuer="gc-1")["sub"] == "gc-1"
    assert "aud" not in payload(issuer="gc-1")
    both = payload(issuer="gc-a", subject="gc-1", audience="mc-1")
    assert (both["iss"], both["sub"], both["aud"]) == ("gc-a", "gc-1", "mc-1")


def test_unbound_keys_are_accepted_only_with_the_opt_in() -> None:
    token = encode(gc_claims(), LEGACY_KEY)
    opted_in = TokenVerifier(
        [LEGACY_KEY.public_key()],
        required_scope=SCOPE_MC,
        allowed_callers={ServiceType.GLOBAL_CONTROLLER},
        allow_unbound_keys=True,
    )
    assert opted_in.verify(token).subject == "gc-1"
    with pytest.raises(AuthenticationFailed) as info:
        strict_verifier().verify(token)
    assert info.value.reason == "unbound_key"


def test_unbound_keys_are_refused_by_default() -> None:
    assert ALLOW_UNBOUND_KEYS_DEFAULT is False
    verifier = TokenVerifier(
        [LEGACY_KEY.public_key()],
        required_scope=SCOPE_MC,
        allowed_callers={ServiceType.GLOBAL_CONTROLLER},
    )
    with pytest.raises(AuthenticationFailed) as info:
        verifier.verify(encode(gc_claims(), LEGACY_KEY))
    assert info.value.reason == "unbound_key"


def test_the_maximum_lifetime_is_configurable() -> None:
    now = int(time.time())
    token = encode(gc_claims(iat=now, exp=now + 3000))
    lenient = TokenVerifier(
        [GC_KEY.public_key()],
        required_scope=SCOPE_MC,
        allowed_callers={ServiceType.GLOBAL_CONTROLLER},
        max_lifetime_seconds=3600,
        allow_unbound_keys=True,
    )
    assert lenient.verify(token).expires_at == now + 3000
    with pytest.raises(AuthenticationFailed) as info:
        mc_verifier().verify(token)
    assert info.value.reason == "too_long_lived"
    assert mc_verifier().verify(encode(gc_claims(iat=now, exp=now + 600))).issued_at == now


def test_a_bound_key_in_the_key_set_of_another_type_is_refused_at_start() -> None:
    bound = TrustedKey.bound(GC_KEY.public_key(), ServiceType.GLOBAL_CONTROLLER, "gc-1")
    with pytest.raises(ValueError, match="two service types"):
        TokenVerifier.from_key_sets(
            {ServiceType.MEETING_CONTROLLER: [bound]},
            required_scope=SCOPE_GC,
            allowed_callers={ServiceType.MEETING_CONTROLLER},
            allow_unbound_keys=True,
        )
