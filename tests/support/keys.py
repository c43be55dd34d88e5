"""Service keys and tokens for tests: the binding secret test MCs share and a token provider
for any service profile, signed with a key written by `generate_key_files`."""

from __future__ import annotations

from pathlib import Path

from darktower.auth.client import ServiceTokenProvider
from darktower.auth.keys import load_private_key
from darktower.auth.tokens import SERVICE_PROFILES

__all__ = ["TEST_BINDING_SECRET", "token_provider"]

TEST_BINDING_SECRET = "test-binding-secret-3f9a1c"


def token_provider(key_dir: Path, service: str) -> ServiceTokenProvider:
    """Tokens of `service` ("gc", "mc", "mh"), signed with `key_dir/<service>.key`."""
    service_type, scope = SERVICE_PROFILES[service]
    return ServiceTokenProvider(
        load_private_key(key_dir / f"{service}.key"),
        service_type=service_type,
        scope=scope,
        issuer=f"test-{service}",
    )
