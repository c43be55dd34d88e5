"""Service keys and tokens for tests: the binding secret test MCs share and a token provider
for any service profile, signed with a key written by `generate_key_files`."""

from __future__ import annotations

from pathlib import Path

from darktower.auth.client import ServiceTokenProvider
from darktower.auth.keys import load_private_key
from darktower.auth.tokens import GC_AUDIENCE, SERVICE_PROFILES

__all__ = ["TEST_BINDING_SECRET", "token_provider"]

TEST_BINDING_SECRET = "test-binding-secret-3f9a1c"


def token_provider(
    key_dir: Path, service: str, *, audience: str | None = None, issuer: str | None = None
) -> ServiceTokenProvider:
    """Tokens of `service` ("gc", "mc", "mh"), signed with the legacy `key_dir/<service>.key`
    (unbound: accepted only by a server that opts in), for `audience` (an MC's id for "gc";
    the GC audience by default for "mc" and "mh"), from `issuer` (also `sub`)."""
    service_type, scope = SERVICE_PROFILES[service]
    if audience is None and service != "gc":
        audience = GC_AUDIENCE
    return ServiceTokenProvider(
        load_private_key(key_dir / f"{service}.key"),
        service_type=service_type,
        scope=scope,
        issuer=issuer or f"test-{service}",
        audience=audience,
    )
