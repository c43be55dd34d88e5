"""A reloadable trust store: the public keys a service trusts now, from files and a JWKS.

`KeyRing` holds the keys of one caller type — the `.pub` files and directories it was
configured with (re-read by `reload()`, on SIGHUP) and, optionally, the keys of a
`JwksTrustSource`. Verifiers do not read it: they are told. `subscribe(listener)` registers a
callback that gets the merged key list after every change; `TokenVerifier.replace_keys` and
`JoinTokenVerifier.replace_keys` are such listeners.

Reload rules: a file that cannot be read or parsed keeps every key as it was (one error line
naming the file and the problem); so does a reload that would leave no key at all. A change is
logged as the kids added and removed — fingerprints, never key material. A key listed both in a
file and in the JWKS with different bindings keeps the file's (the JWKS entry is left out and
logged): an operator's file outranks what a server publishes.

`ReloadableSigningKey` is the same for the service's own private key: `reload()` re-reads the
file into a `SigningKey`, refusing a key bound to another instance than the running one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from darktower.auth.client import SigningKey
from darktower.auth.errors import KeyFileError
from darktower.auth.jwks import JwksTrustSource
from darktower.auth.keys import ServiceKey, TrustedKey, load_service_key, load_trusted_keys
from darktower.auth.service_types import ServiceType

__all__ = ["KeyRing", "KeysListener", "ReloadableSigningKey", "describe_change"]

log = logging.getLogger(__name__)

KeysListener = Callable[[list[TrustedKey]], None]


def describe_change(old: set[str], new: set[str]) -> str:
    """`added [..], removed [..]` over kids, for a log line."""
    return f"added {sorted(new - old) or 'none'}, removed {sorted(old - new) or 'none'}"


class KeyRing:
    """The public keys of one caller type (`name`, for log lines: "trusted GC keys").

    `paths` are loaded now (`KeyFileError` propagates: at start a bad file is fatal). With a
    `jwks` source its keys join the file keys whenever it fetches (this ring becomes its
    `on_change`)."""

    def __init__(
        self,
        name: str,
        paths: Sequence[Path],
        *,
        jwks: JwksTrustSource | None = None,
    ) -> None:
        self.name = name
        self._paths = list(paths)
        self._file_keys = load_trusted_keys(self._paths) if self._paths else []
        self._jwks = jwks
        self._listeners: list[KeysListener] = []
        self._keys = self._merge()
        if jwks is not None:
            jwks.on_change = self._jwks_changed

    @property
    def keys(self) -> list[TrustedKey]:
        return list(self._keys)

    @property
    def kids(self) -> set[str]:
        return {key.kid for key in self._keys}

    @property
    def jwks(self) -> JwksTrustSource | None:
        return self._jwks

    def subscribe(self, listener: KeysListener) -> None:
        """Call `listener(keys)` after every change (not now: its owner starts from `keys`)."""
        self._listeners.append(listener)

    def reload(self) -> bool:
        """Re-read the key files; True when the key set changed (see the module doc)."""
        if not self._paths:
            return False
        try:
            file_keys = load_trusted_keys(self._paths)
        except KeyFileError as exc:
            log.error("%s not reloaded, keeping %d keys: %s", self.name, len(self._keys), exc)
            return False
        return self._update(file_keys)

    async def resolve_unknown_kid(self, kid: str) -> bool:
        """An `UnknownKidHook`: ask the JWKS source (False without one)."""
        if self._jwks is None:
            return False
        return await self._jwks.resolve_unknown_kid(kid)

    def _jwks_changed(self, _keys: list[TrustedKey]) -> None:
        self._update(self._file_keys)

    def _update(self, file_keys: list[TrustedKey]) -> bool:
        old_file_keys, old_keys = self._file_keys, self._keys
        self._file_keys = file_keys
        keys = self._merge()
        if not keys:
            self._file_keys = old_file_keys
            log.error(
                "%s not reloaded, keeping %d keys: none would be left", self.name, len(old_keys)
            )
            return False
        # Listeners may read `keys` of this ring (and of others): it is set before they run.
        self._keys = keys
        try:
            for listener in self._listeners:
                listener(keys)
        except ValueError as exc:  # a verifier refused the set (one key for two types)
            self._file_keys, self._keys = old_file_keys, old_keys
            for listener in self._listeners:
                listener(old_keys)
            log.error("%s not reloaded, keeping %d keys: %s", self.name, len(old_keys), exc)
            return False
        old, new = {k.kid for k in old_keys}, {k.kid for k in keys}
        if old == new:
            return False
        log.info("%s reloaded: %s", self.name, describe_change(old, new))
        return True

    def _merge(self) -> list[TrustedKey]:
        keys = {key.kid: key for key in self._file_keys}
        for key in self._jwks.keys if self._jwks is not None else ():
            known = keys.get(key.kid)
            if known is None:
                keys[key.kid] = key
            elif known != _without_path(key, known.path):
                log.warning(
                    "%s: JWKS key %s left out: a key file binds it otherwise", self.name, key.kid
                )
        return list(keys.values())


def _without_path(key: TrustedKey, path: Path | None) -> TrustedKey:
    return TrustedKey(key.public_key, key.kid, key.service_type, key.instance_id, path)


class ReloadableSigningKey:
    """This service's private key file, loaded into `signing_key`; `reload()` re-reads it.

    `service_type`/`instance_id`: who this service is. A key bound to another instance is
    refused at start (`KeyFileError`) and at reload (one error line, the old key stays).
    """

    def __init__(
        self,
        path: Path,
        *,
        service_type: ServiceType,
        instance_id: str,
        loaded: ServiceKey | None = None,
    ) -> None:
        """`loaded`: the file's key, when the caller has already loaded (and checked) it."""
        self.path = path
        self._service_type = service_type
        self._instance_id = instance_id
        self.service_key = self._checked(loaded or load_service_key(path))
        self.signing_key = SigningKey(self.service_key.private_key)

    def reload(self) -> bool:
        """True when the file now holds another key, which signs from now on."""
        try:
            service_key = self._checked(load_service_key(self.path))
        except KeyFileError as exc:
            log.error("signing key not reloaded, keeping kid %s: %s", self.signing_key.kid, exc)
            return False
        old_kid = self.signing_key.kid
        if not self.signing_key.replace(service_key.private_key):
            return False
        self.service_key = service_key
        log.info("signing key reloaded: kid %s replaces %s", self.signing_key.kid, old_kid)
        return True

    def _checked(self, key: ServiceKey) -> ServiceKey:
        bound = key.service_type is not None
        if bound and (key.service_type, key.instance_id) != (self._service_type, self._instance_id):
            raise KeyFileError(self.path, f"bound to {key.instance_id}, not {self._instance_id}")
        return key
