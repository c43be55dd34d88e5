"""Service authentication (docs/wire-protocol.md): Ed25519 JWT service tokens between darktower
services.

Modules, one concept each:

* `errors`       the error tree (`AuthError` and its children), each error with a label-safe code
* `service_types` `ServiceType` and the short names gc, mc, mh
* `keys`         key files (dev trio, or one per instance bound to it): generate, load,
                 `TrustedKey`, `key_id` fingerprint
* `tokens`       mint and verify tokens (pure): `mint_service_token`, `TokenVerifier`
* `client`       the caller's side: `ServiceTokenProvider` (cached token, call metadata),
                 `SigningKey` (the own private key, replaceable while running)
* `jwks`         JWKS encode/decode (Ed25519 with darktower's binding fields) and
                 `JwksTrustSource` (fetched, cached, refreshed; unknown kid → one refresh)
* `keyring`      `KeyRing` (trusted keys reloaded from files on SIGHUP, plus a JWKS) and
                 `ReloadableSigningKey`
* `publishing`   `PublishedKeys`: what a GC's JWKS lists (current key, retired ones for a while)
* `interceptor`  the receiver's side: `ServiceAuthInterceptor` for grpc.aio servers, refusing
                 before the request body is read
* `grpc_server`  `service_grpc_server`: the services' gRPC server with its limits
* `cli`          `darktower keys generate` and `darktower token`
"""

from __future__ import annotations

from darktower.auth.client import ServiceTokenProvider
from darktower.auth.errors import AuthenticationFailed, AuthError, CallerNotAllowed, KeyFileError
from darktower.auth.interceptor import (
    UNAUTHENTICATED_MESSAGE,
    ServiceAuthInterceptor,
    current_claims,
)
from darktower.auth.keys import (
    ServiceKey,
    TrustedKey,
    generate_instance_key_files,
    generate_key_files,
    key_id,
    load_private_key,
    load_public_keys,
    load_service_key,
    load_trusted_keys,
)
from darktower.auth.tokens import (
    SCOPE_GC,
    SCOPE_MC,
    SERVICE_PROFILES,
    ServiceClaims,
    ServiceType,
    TokenVerifier,
    mint_service_token,
)

__all__ = [
    "SCOPE_GC",
    "SCOPE_MC",
    "SERVICE_PROFILES",
    "UNAUTHENTICATED_MESSAGE",
    "AuthError",
    "AuthenticationFailed",
    "CallerNotAllowed",
    "KeyFileError",
    "ServiceAuthInterceptor",
    "ServiceClaims",
    "ServiceKey",
    "ServiceTokenProvider",
    "ServiceType",
    "TokenVerifier",
    "TrustedKey",
    "current_claims",
    "generate_instance_key_files",
    "generate_key_files",
    "key_id",
    "load_private_key",
    "load_public_keys",
    "load_service_key",
    "load_trusted_keys",
    "mint_service_token",
]
