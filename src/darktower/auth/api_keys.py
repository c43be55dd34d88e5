"""API keys: how an application proves to the GC that it may decide who joins.

An API key is a pair `{"key_id": "APIxxxxxxxxxxxx", "secret": "<43 url-safe characters>"}`
kept in a JSON file (mode 0600). The application signs access tokens
(`darktower.auth.access_tokens`) with the secret; the token's `iss` names the key id; the GC
finds the secret by that id among the key files it trusts (`GC_API_KEY_FILES`).

`ApiKeyRing` is that trust store: loaded at start, reloaded on SIGHUP (`reload()`); a reload
that finds a bad file keeps the keys it had and says which file (never a secret). Neither a
secret nor a key's repr ever shows the secret.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "KEY_ID_PATTERN",
    "MIN_SECRET_CHARS",
    "ApiKey",
    "ApiKeyError",
    "ApiKeyRing",
    "generate_api_key",
    "load_api_key_file",
    "write_api_key_file",
]

log = logging.getLogger(__name__)

KEY_ID_PATTERN = re.compile(r"API[A-Za-z0-9]{12,60}")
"""A key id: `API` and 12 to 60 letters or digits (generated: 12)."""
MIN_SECRET_CHARS = 32
"""The shortest secret accepted: HS256 wants at least 256 bits of key."""
_MAX_FILE_BYTES = 4096


class ApiKeyError(Exception):
    """A key file that cannot be used; the message names the file and why, never the secret."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    secret: str = field(repr=False)


def generate_api_key() -> ApiKey:
    """A fresh key: a random id and a 256-bit random secret."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    key_id = "API" + "".join(secrets.choice(alphabet) for _ in range(12))
    return ApiKey(key_id=key_id, secret=secrets.token_urlsafe(32))


def write_api_key_file(path: Path, key: ApiKey, *, force: bool = False) -> None:
    """Write `key` to `path` atomically, mode 0600 from the start. An existing file is kept
    (FileExistsError) unless `force`."""
    data = json.dumps({"key_id": key.key_id, "secret": key.secret}, indent=2) + "\n"
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if `path` exists: no overwrite, no race
            os.unlink(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_api_key_file(path: Path) -> ApiKey:
    """The key in `path`; ApiKeyError naming the file and the reason."""
    try:
        raw = path.read_bytes()[: _MAX_FILE_BYTES + 1]
    except OSError as exc:
        raise ApiKeyError(f"{path}: cannot read ({exc.strerror or 'error'})") from None
    if len(raw) > _MAX_FILE_BYTES:
        raise ApiKeyError(f"{path}: too large for an API key file")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiKeyError(f"{path}: not JSON") from None
    if not isinstance(data, dict):
        raise ApiKeyError(f"{path}: not a JSON object")
    key_id, secret = data.get("key_id"), data.get("secret")
    if not isinstance(key_id, str) or not KEY_ID_PATTERN.fullmatch(key_id):
        raise ApiKeyError(f"{path}: key_id must be API and 12 to 60 letters or digits")
    if not isinstance(secret, str) or len(secret) < MIN_SECRET_CHARS:
        raise ApiKeyError(f"{path}: secret must be at least {MIN_SECRET_CHARS} characters")
    return ApiKey(key_id=key_id, secret=secret)


def _load_all(paths: Iterable[Path]) -> dict[str, ApiKey]:
    keys: dict[str, ApiKey] = {}
    for path in paths:
        key = load_api_key_file(path)
        if key.key_id in keys and keys[key.key_id].secret != key.secret:
            raise ApiKeyError(f"{path}: key id {key.key_id} is in two files with two secrets")
        keys[key.key_id] = key
    return keys


class ApiKeyRing:
    """The API keys the GC trusts: from `paths`, reloadable."""

    def __init__(self, paths: Iterable[Path] = ()) -> None:
        """Load every file; ApiKeyError for the first bad one (a GC does not start on it)."""
        self._paths = tuple(paths)
        self._keys: Mapping[str, ApiKey] = _load_all(self._paths)

    def __repr__(self) -> str:
        return f"ApiKeyRing(key_ids={sorted(self._keys)})"

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def secret(self, key_id: str) -> str | None:
        """The secret of a trusted key id, or None."""
        key = self._keys.get(key_id)
        return None if key is None else key.secret

    def reload(self) -> bool:
        """Read the files again and swap the keys in one step. A bad file keeps the old keys
        (logged: the file and why); True when the new set took effect."""
        try:
            keys = _load_all(self._paths)
        except ApiKeyError as exc:
            log.error("API keys not reloaded, the previous ones stay: %s", exc)
            return False
        added = sorted(set(keys) - set(self._keys))
        removed = sorted(set(self._keys) - set(keys))
        changed = sorted(k for k in set(keys) & set(self._keys) if keys[k] != self._keys[k])
        self._keys = keys
        log.info(
            "API keys reloaded: %d trusted; added %s, removed %s, new secret %s",
            len(keys),
            added or "none",
            removed or "none",
            changed or "none",
        )
        return True
