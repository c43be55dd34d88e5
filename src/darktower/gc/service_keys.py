"""The GC's keys, reloadable: the MC and MH keys it trusts, its own signing key, and the public
keys it publishes at `/.well-known/jwks.json` (README "Key rotation").

On SIGHUP (`reload`) the trusted key files and directories are re-read (a bad file keeps the
keys, one error line) and so is `GC_SERVICE_KEY_FILE`: a new key there signs every token from
then on (calls to MCs, join tokens), and the replaced key stays in the JWKS for
`GC_RETIRED_KEY_PUBLISH_SECONDS`, so that receivers keep accepting what it signed before.
"""

from __future__ import annotations

from collections.abc import Iterable

from darktower.auth.errors import KeyFileError
from darktower.auth.keyring import KeyRing, ReloadableSigningKey
from darktower.auth.keys import ServiceKey, TrustedKey
from darktower.auth.publishing import PublishedKeys
from darktower.auth.tokens import ServiceType, TokenVerifier
from darktower.gc.settings import GcSettings
from darktower.runtime.serving import StartupError

__all__ = ["GcServiceKeys"]


class GcServiceKeys:
    """`mc`, `mh`: the trusted key rings; `signing`: the GC's key; `published`: its JWKS."""

    def __init__(self, settings: GcSettings, *, signing: ServiceKey) -> None:
        assert settings.service_key_file is not None
        try:
            self.mc = KeyRing("trusted MC keys", settings.trusted_mc_key_files)
            self.mh = KeyRing("trusted MH keys", settings.trusted_mh_key_files)
        except KeyFileError as exc:
            raise StartupError(str(exc)) from None
        self.signing = ReloadableSigningKey(
            settings.service_key_file,
            service_type=ServiceType.GLOBAL_CONTROLLER,
            instance_id=settings.id,
            loaded=signing,
        )
        self.published = PublishedKeys(
            self.signing, retire_seconds=settings.retired_key_publish_seconds
        )
        self._verifiers: list[TokenVerifier] = []
        self.mc.subscribe(lambda _keys: self._update())
        self.mh.subscribe(lambda _keys: self._update())

    def follow(self, verifiers: Iterable[TokenVerifier]) -> None:
        """Keep these verifiers (the gRPC server's) on the current MC and MH keys."""
        self._verifiers += verifiers

    def jwks_keys(self) -> list[TrustedKey]:
        return self.published.jwks_keys()

    def reload(self) -> None:
        """SIGHUP: re-read the trusted key files and the own signing key."""
        self.mc.reload()
        self.mh.reload()
        self.published.reload()

    def _update(self) -> None:
        key_sets: dict[ServiceType, list[TrustedKey]] = {
            ServiceType.MEETING_CONTROLLER: self.mc.keys,
            ServiceType.MEDIA_HANDLER: self.mh.keys,
        }
        for verifier in self._verifiers:
            verifier.replace_keys(key_sets)
