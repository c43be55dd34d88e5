"""Who may call the GC's gRPC services: MCs on `GlobalControllerService`, MHs on
`MediaHandlerRegistryService`, each with a token of its own service type (`auth_interceptor`)."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from darktower.auth.interceptor import ServiceAuthInterceptor
from darktower.auth.keys import TrustedKey
from darktower.auth.tokens import (
    ALLOW_UNBOUND_KEYS_DEFAULT,
    DEFAULT_MAX_LIFETIME_SECONDS,
    GC_AUDIENCE,
    SCOPE_GC,
    ServiceType,
    TokenVerifier,
)

__all__ = ["GC_SERVICE_PREFIX", "MH_REGISTRY_PREFIX", "TrustedKeys", "auth_interceptor"]

GC_SERVICE_PREFIX = "/dark_tower.internal.GlobalControllerService/"
MH_REGISTRY_PREFIX = "/dark_tower.internal.MediaHandlerRegistryService/"

TrustedKeys = Sequence[Ed25519PublicKey | TrustedKey]


def auth_interceptor(
    mc_keys: TrustedKeys,
    mh_keys: TrustedKeys,
    gc_keys: TrustedKeys = (),
    *,
    audience: str | Sequence[str] = GC_AUDIENCE,
    allow_unbound_keys: bool = ALLOW_UNBOUND_KEYS_DEFAULT,
    max_lifetime_seconds: int = DEFAULT_MAX_LIFETIME_SECONDS,
) -> ServiceAuthInterceptor:
    """The GC server's token check: MCs only on GlobalControllerService, MHs only on the
    MH registry, scope `service.write.gc` and `aud` one of `audience` on both; other methods
    are checked as MC calls.

    Each key is trusted for its own service type only, so an MH-signed token claiming to be an
    MC's is UNAUTHENTICATED; a bound key (`TrustedKey` from `load_trusted_keys`) only for its
    own instance (`sub`), and an unbound one only with `allow_unbound_keys`. Trusting
    `gc_keys` turns a peer GC's (scope-gc) token into a clear PERMISSION_DENIED instead of
    UNAUTHENTICATED; it grants nothing. A token living longer than `max_lifetime_seconds`
    (`GC_SERVICE_TOKEN_MAX_LIFETIME_SECONDS`) is UNAUTHENTICATED. Raises ValueError if no key
    at all is given, or one key is given for two types.
    """
    key_sets: dict[ServiceType, TrustedKeys] = {
        ServiceType.MEETING_CONTROLLER: list(mc_keys),
        ServiceType.MEDIA_HANDLER: list(mh_keys),
    }
    if gc_keys:
        key_sets[ServiceType.GLOBAL_CONTROLLER] = list(gc_keys)

    def verifier(caller: ServiceType) -> TokenVerifier:
        return TokenVerifier.from_key_sets(
            key_sets,
            required_scope=SCOPE_GC,
            allowed_callers={caller},
            audience=audience,
            allow_unbound_keys=allow_unbound_keys,
            max_lifetime_seconds=max_lifetime_seconds,
        )

    mc_verifier = verifier(ServiceType.MEETING_CONTROLLER)
    return ServiceAuthInterceptor(
        mc_verifier,
        service="gc",
        routes={
            GC_SERVICE_PREFIX: mc_verifier,
            MH_REGISTRY_PREFIX: verifier(ServiceType.MEDIA_HANDLER),
        },
    )
