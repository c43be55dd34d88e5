"""`GET /.well-known/jwks.json`: the GC's public signing keys as a JWKS (RFC 7517).

Open (no token: public keys are public), nothing secret in it. Receivers (MCs with
`MC_TRUSTED_GC_JWKS_URL`) fetch it at start, every few minutes, and once more when a token
names a key they do not know; `Cache-Control` lets a proxy keep it for a minute at most, so
that a rotation reaches receivers behind one quickly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from darktower.auth.jwks import JWKS_PATH, jwks_document
from darktower.auth.keys import TrustedKey

__all__ = ["JWKS_CACHE_CONTROL", "JWKS_MEDIA_TYPE", "mount_jwks"]

JWKS_MEDIA_TYPE = "application/jwk-set+json"
JWKS_CACHE_CONTROL = "public, max-age=60"


def mount_jwks(app: FastAPI, published: Callable[[], Sequence[TrustedKey]]) -> None:
    """Serve `published()` (asked on every request) at JWKS_PATH."""

    @app.get(
        JWKS_PATH,
        tags=["keys"],
        summary="The GC's public signing keys (JWKS)",
        responses={200: {"content": {JWKS_MEDIA_TYPE: {}}}},
    )
    async def jwks() -> JSONResponse:
        return JSONResponse(
            jwks_document(published()),
            media_type=JWKS_MEDIA_TYPE,
            headers={"Cache-Control": JWKS_CACHE_CONTROL},
        )
