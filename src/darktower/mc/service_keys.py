"""The MC's keys, reloadable: the GC keys it trusts (files and/or the GC's JWKS) and its own
signing key (README "Key rotation").

Trust in GCs comes from `MC_TRUSTED_GC_KEY_FILES` (files or directories, re-read on SIGHUP),
from `MC_TRUSTED_GC_JWKS_URL` (fetched at start, every `MC_TRUSTED_GC_JWKS_REFRESH_SECONDS`,
and once more when a token names an unknown key — at most every
`MC_TRUSTED_GC_JWKS_MIN_REFRESH_SECONDS`), or both (their union). At start there must be at
least one key: with the JWKS only, a first fetch that fails is a `StartupError`.
"""

from __future__ import annotations

import logging
import ssl

from darktower.auth.client import SigningKey
from darktower.auth.errors import KeyFileError
from darktower.auth.join_tokens import JoinTokenVerifier
from darktower.auth.jwks import JwksTrustSource, safe_url
from darktower.auth.keyring import KeyRing, ReloadableSigningKey
from darktower.auth.keys import ServiceKey
from darktower.auth.tokens import ServiceType, TokenVerifier
from darktower.mc.settings import McSettings
from darktower.runtime.serving import StartupError
from darktower.runtime.supervisor import TaskSupervisor
from darktower.runtime.tls import TlsConfig

__all__ = ["JWKS_TASK", "McServiceKeys"]

JWKS_TASK = "jwks-refresh"


class McServiceKeys:
    """`gc`: the trusted GC keys; `signing`: this MC's own key (None without a GC to call)."""

    def __init__(self, settings: McSettings, tls: TlsConfig) -> None:
        self._jwks: JwksTrustSource | None = None
        if settings.trusted_gc_jwks_url:
            self._jwks = _jwks_source(settings, tls)
            self._jwks.fetch_blocking()
        try:
            self.gc = KeyRing("trusted GC keys", settings.trusted_gc_key_files, jwks=self._jwks)
        except KeyFileError as exc:
            raise StartupError(f"MC_TRUSTED_GC_KEY_FILES: {exc}") from None
        if not self.gc.keys:
            if self._jwks is None:
                raise StartupError(
                    "no trusted GC key: set MC_TRUSTED_GC_KEY_FILES or MC_TRUSTED_GC_JWKS_URL"
                )
            raise StartupError(
                f"MC_TRUSTED_GC_JWKS_URL: no GC key from {safe_url(self._jwks.url)} "
                "(the line above says why)"
            )
        self._settings = settings
        self.signing: ReloadableSigningKey | None = None

    def sign_with(self, loaded: ServiceKey) -> SigningKey:
        """This MC's key (loaded from MC_SERVICE_KEY_FILE), from now on reloaded with the rest."""
        assert self._settings.service_key_file is not None
        self.signing = ReloadableSigningKey(
            self._settings.service_key_file,
            service_type=ServiceType.MEETING_CONTROLLER,
            instance_id=self._settings.id,
            loaded=loaded,
        )
        return self.signing.signing_key

    def follow(self, verifier: TokenVerifier) -> None:
        """Keep `verifier` on the current GC keys; an unknown kid in a GC token asks the JWKS
        once (rate-limited)."""
        self.gc.subscribe(verifier.replace_keys)
        verifier.on_unknown_kid(self.gc.resolve_unknown_kid)

    def join_verifier(self) -> JoinTokenVerifier:
        """A join token verifier kept on the current GC keys."""
        joins = JoinTokenVerifier([key.public_key for key in self.gc.keys])
        self.gc.subscribe(joins.replace_keys)
        return joins

    def start(self, tasks: TaskSupervisor) -> None:
        """The periodic JWKS refresh, as a supervised task (nothing without a JWKS URL)."""
        if self._jwks is not None:
            self._jwks.start(tasks, JWKS_TASK)

    def reload(self) -> None:
        """SIGHUP: re-read the trusted key files and the own signing key."""
        self.gc.reload()
        if self.signing is not None:
            self.signing.reload()


def _jwks_source(settings: McSettings, tls: TlsConfig) -> JwksTrustSource:
    # httpx logs every request at INFO: a line per periodic fetch says nothing that the
    # source's own lines (keys added/removed, a failure) do not.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    verify: ssl.SSLContext | bool = True
    if tls.ca_file is not None:
        verify = ssl.create_default_context(cafile=str(tls.ca_file))
    try:
        return JwksTrustSource(
            settings.trusted_gc_jwks_url,
            service_type=ServiceType.GLOBAL_CONTROLLER,
            refresh_seconds=settings.trusted_gc_jwks_refresh_seconds,
            min_refresh_seconds=settings.trusted_gc_jwks_min_refresh_seconds,
            verify=verify,
        )
    except ValueError as exc:
        raise StartupError(f"MC_TRUSTED_GC_JWKS_URL: {exc}") from None
