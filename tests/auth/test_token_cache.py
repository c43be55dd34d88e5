"""TokenVerifier's cache of verified tokens: hits skip the signature, never the expiry or the
caller check; failures are never remembered; the cache is bounded (least recently used out)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from darktower.auth import tokens
from darktower.auth.errors import AuthenticationFailed, CallerNotAllowed
from darktower.auth.tokens import (
    DEFAULT_LEEWAY_SECONDS,
    SCOPE_MC,
    ServiceType,
    TokenVerifier,
    mint_service_token,
)

GC_KEY = Ed25519PrivateKey.generate()
MH_KEY = Ed25519PrivateKey.generate()


def verifier(cache_size: int = 16) -> TokenVerifier:
    return TokenVerifier.from_key_sets(
        {
            ServiceType.GLOBAL_CONTROLLER: [GC_KEY.public_key()],
            ServiceType.MEDIA_HANDLER: [MH_KEY.public_key()],
        },
        required_scope=SCOPE_MC,
        allowed_callers={ServiceType.GLOBAL_CONTROLLER},
        cache_size=cache_size,
        allow_unbound_keys=True,
    )


def gc_token(issuer: str = "gc-1", ttl: int = 300) -> str:
    return mint_service_token(
        GC_KEY,
        service_type=ServiceType.GLOBAL_CONTROLLER,
        scope=SCOPE_MC,
        issuer=issuer,
        ttl_seconds=ttl,
    )


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Tokens that went through the full signature check (jwt.decode), in order."""
    seen: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return seen


def test_a_verified_token_is_checked_once_and_answers_the_same_claims(
    decodes: list[str],
) -> None:
    check, token = verifier(), gc_token()
    first = check.verify(token)
    assert [check.verify(token) for _ in range(3)] == [first] * 3
    assert decodes == [token]


def test_a_cached_token_still_expires(decodes: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    check, token = verifier(), gc_token(ttl=60)
    claims = check.verify(token)
    # Just inside the leeway: still valid, from the cache.
    inside = claims.expires_at + DEFAULT_LEEWAY_SECONDS - 1
    monkeypatch.setattr(tokens, "time", SimpleNamespace(time=lambda: float(inside)))
    assert check.verify(token) == claims
    monkeypatch.setattr(tokens, "time", SimpleNamespace(time=lambda: float(inside + 1)))
    with pytest.raises(AuthenticationFailed) as refused:
        check.verify(token)
    assert refused.value.reason == "expired"
    assert decodes == [token]
    # Dropped from the cache: back at the real time (where it is valid), the full check runs.
    monkeypatch.setattr(tokens, "time", time)
    assert check.verify(token) == claims
    assert decodes == [token, token]


def test_a_token_of_another_caller_type_is_refused_every_time_and_never_cached(
    decodes: list[str],
) -> None:
    check = verifier()
    mh_token = mint_service_token(
        MH_KEY, service_type=ServiceType.MEDIA_HANDLER, scope=SCOPE_MC, issuer="mh-1"
    )
    for _ in range(2):
        with pytest.raises(CallerNotAllowed):
            check.verify(mh_token)
    assert decodes == [mh_token, mh_token]
    # Signed by the MH key but claiming to be the GC: bad_claims, each time.
    forged = mint_service_token(
        MH_KEY, service_type=ServiceType.GLOBAL_CONTROLLER, scope=SCOPE_MC, issuer="mh-1"
    )
    for _ in range(2):
        with pytest.raises(AuthenticationFailed) as refused:
            check.verify(forged)
        assert refused.value.reason == "bad_claims"
    assert len(decodes) == 4


def test_the_cache_is_bounded_and_evicts_the_least_recently_used(decodes: list[str]) -> None:
    check = verifier(cache_size=3)
    issued = [gc_token(issuer=f"gc-{i}") for i in range(5)]
    for token in issued[:3]:
        check.verify(token)
    check.verify(issued[0])  # now the most recently used
    for token in issued[3:]:
        check.verify(token)  # evicts issued[1], then issued[2]
    assert len(decodes) == 5
    check.verify(issued[0])
    assert len(decodes) == 5
    check.verify(issued[1])
    assert decodes[-1] == issued[1] and len(decodes) == 6


def test_cache_size_zero_checks_every_time(decodes: list[str]) -> None:
    check, token = verifier(cache_size=0), gc_token()
    check.verify(token)
    check.verify(token)
    assert decodes == [token, token]
