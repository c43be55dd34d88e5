"""ServiceTokenProvider: caching, re-minting at two thirds of the life, call metadata."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from darktower.auth.client import ServiceTokenProvider
from darktower.auth.keys import TrustedKey
from darktower.auth.tokens import SCOPE_GC, SCOPE_MC, ServiceType, TokenVerifier


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


KEY = Ed25519PrivateKey.generate()
START = 1_900_000_000.0


def provider(clock: FakeClock, ttl: int = 300) -> ServiceTokenProvider:
    return ServiceTokenProvider(
        KEY,
        service_type=ServiceType.MEETING_CONTROLLER,
        scope=SCOPE_GC,
        issuer="mc-1",
        ttl_seconds=ttl,
        clock=clock,
    )


@pytest.mark.parametrize(
    ("elapsed", "reminted"),
    [(0, False), (199, False), (199.9, False), (200, True), (299, True), (10_000, True)],
)
def test_token_is_cached_until_a_third_of_its_life_remains(elapsed: float, reminted: bool) -> None:
    clock = FakeClock(START)
    tokens = provider(clock)
    first = tokens.token()

    clock.now = START + elapsed
    second = tokens.token()

    assert (second != first) is reminted
    assert tokens.token() == second, "the new token is cached in turn"


def test_metadata_is_a_bearer_authorization_that_verifies() -> None:
    tokens = ServiceTokenProvider(
        KEY, service_type=ServiceType.MEETING_CONTROLLER, scope=SCOPE_GC, issuer="mc-1"
    )
    ((name, value),) = tokens.metadata()

    assert name == "authorization"
    assert value == f"Bearer {tokens.token()}"
    verifier = TokenVerifier(
        [KEY.public_key()],
        required_scope=SCOPE_GC,
        allowed_callers={ServiceType.MEETING_CONTROLLER},
        allow_unbound_keys=True,
    )
    claims = verifier.verify(value.removeprefix("Bearer "))
    assert (claims.issuer, claims.expires_at - claims.issued_at) == ("mc-1", 300)


def test_scope_is_passed_through() -> None:
    tokens = ServiceTokenProvider(
        KEY, service_type=ServiceType.GLOBAL_CONTROLLER, scope=SCOPE_MC, issuer="gc-1"
    )
    verifier = TokenVerifier(
        [KEY.public_key()],
        required_scope=SCOPE_MC,
        allowed_callers={ServiceType.GLOBAL_CONTROLLER},
        allow_unbound_keys=True,
    )
    assert verifier.verify(tokens.token()).scope == SCOPE_MC


@pytest.mark.parametrize(("issuer", "ttl", "match"), [("", 300, "issuer"), ("mc-1", 0, "ttl")])
def test_provider_refuses_nonsense(issuer: str, ttl: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ServiceTokenProvider(
            KEY,
            service_type=ServiceType.MEDIA_HANDLER,
            scope=SCOPE_GC,
            issuer=issuer,
            ttl_seconds=ttl,
        )


def test_subject_and_audience_are_passed_through() -> None:
    tokens = ServiceTokenProvider(
        KEY,
        service_type=ServiceType.GLOBAL_CONTROLLER,
        scope=SCOPE_MC,
        issuer="gc-1",
        subject="gc-1",
        audience="mc-2",
    )
    verifier = TokenVerifier(
        [TrustedKey.bound(KEY.public_key(), ServiceType.GLOBAL_CONTROLLER, "gc-1")],
        required_scope=SCOPE_MC,
        allowed_callers={ServiceType.GLOBAL_CONTROLLER},
        audience="mc-2",
        allow_unbound_keys=False,
    )
    claims = verifier.verify(tokens.token())
    assert (claims.subject, claims.audience) == ("gc-1", ("mc-2",))
