"""Ed25519 service key files: generate, load, fingerprint (SPEC §5, §8 `darktower keys`).

Layout written by `generate_key_files(DIR)`: `DIR/{gc,mc,mh}.key` — the private key, PKCS8 PEM,
unencrypted, mode 0600 — and `DIR/{gc,mc,mh}.pub` — the public key, SubjectPublicKeyInfo PEM.
A receiver trusts a caller by being configured with the caller's `.pub` file.

Every failure is a `KeyFileError` naming the path; key material never appears in a message.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from darktower.auth.errors import KeyFileError

__all__ = [
    "KEY_NAMES",
    "generate_key_files",
    "key_id",
    "load_private_key",
    "load_public_keys",
]

logger = logging.getLogger(__name__)

# One key pair per service type, named by the CLI short names.
KEY_NAMES = ("gc", "mc", "mh")

_PRIVATE_MODE = 0o600
_PUBLIC_MODE = 0o644


def generate_key_files(out_dir: Path, *, force: bool = False) -> list[Path]:
    """Write a fresh key pair per name in KEY_NAMES into `out_dir` (created if needed).

    Returns the written paths, `.key` then `.pub` per name. Without `force`, raises
    `KeyFileError` if any of the six files exists, before writing anything — a key that
    peers already trust must not be replaced by accident.
    """
    targets = [(out_dir / f"{name}.key", out_dir / f"{name}.pub") for name in KEY_NAMES]
    if not force:
        for path in (p for pair in targets for p in pair):
            if path.exists():
                raise KeyFileError(path, "already exists (use --force to overwrite)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KeyFileError(out_dir, f"cannot create directory ({exc.strerror})") from exc

    written: list[Path] = []
    for key_path, pub_path in targets:
        private_key = Ed25519PrivateKey.generate()
        private_pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public_pem = private_key.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        _write_atomically(key_path, private_pem, _PRIVATE_MODE, force=force)
        _write_atomically(pub_path, public_pem, _PUBLIC_MODE, force=force)
        written += [key_path, pub_path]
    return written


def _write_atomically(path: Path, data: bytes, mode: int, *, force: bool) -> None:
    """Write `data` to `path` with exactly `mode`, never visible with a wider mode or half-written.

    The temporary file is created 0600 by mkstemp, so a private key is never readable by
    others even for an instant; the final mode is set before the file gets its name.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.chmod(mode)
        if force:
            tmp.replace(path)
        else:
            # link() fails if the name appeared since the check: no silent overwrite.
            os.link(tmp, path)
    except FileExistsError as exc:
        raise KeyFileError(path, "already exists (use --force to overwrite)") from exc
    except OSError as exc:
        raise KeyFileError(path, f"cannot write ({exc.strerror})") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise KeyFileError(path, "key file not found") from exc
    except IsADirectoryError as exc:
        raise KeyFileError(path, "is a directory, not a key file") from exc
    except OSError as exc:
        raise KeyFileError(path, f"cannot read key file ({exc.strerror})") from exc


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Load an unencrypted PEM Ed25519 private key; `KeyFileError` if it is anything else."""
    data = _read(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        # The library's message is generic, but it is kept off ours anyway: only the path.
        raise KeyFileError(path, "not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(path, "not an Ed25519 private key")
    with contextlib.suppress(OSError):
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            logger.warning("private key file %s is readable by group or others", path)
    return key


def load_public_keys(paths: Iterable[Path]) -> list[Ed25519PublicKey]:
    """Load PEM (SubjectPublicKeyInfo) Ed25519 public keys, in order."""
    keys: list[Ed25519PublicKey] = []
    for path in paths:
        data = _read(path)
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(path, "not a PEM public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError(path, "not an Ed25519 public key")
        keys.append(key)
    return keys


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short stable fingerprint of a public key, used as the JWT `kid`.

    The first 16 hex digits of SHA-256 over the 32 raw key bytes: the same key always gets the
    same id, in every process, and different keys collide with negligible probability.
    """
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]
