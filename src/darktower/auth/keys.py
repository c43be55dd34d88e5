"""Ed25519 service key files: generate, load, fingerprint (docs/wire-protocol.md; `darktower keys`
in docs/reference.md).

Two layouts:

* the dev trio, `generate_key_files(DIR)`: `DIR/{gc,mc,mh}.key` — the private key, PKCS8 PEM,
  unencrypted, mode 0600 — and `DIR/{gc,mc,mh}.pub` — the public key, SubjectPublicKeyInfo PEM.
  These keys are *unbound*: whoever holds `mc.key` may speak for any MC.
* one key per instance, `generate_instance_key_files(DIR, service="mc", instance_id="mc-1")`:
  `DIR/mc-1.key` (0600) and `DIR/mc-1.pub`, each *bound* to its service type and instance id by
  two RFC 7468 explanatory lines before the PEM block::

      darktower-service: mc
      darktower-instance: mc-1
      -----BEGIN PUBLIC KEY-----
      MCowBQYDK2VwAyEA...
      -----END PUBLIC KEY-----

  The binding is in the content, not the file name: renaming `mc-1.pub` to `mc-3.pub` binds
  nothing to mc-3. A verifier refuses a token signed by a bound key unless its `sub` is the
  key's instance id. Lines before the PEM block that do not start with `darktower-` are
  ignored (RFC 7468 explanatory text); a `darktower-` line must be one of the two names above,
  at most once each, and the two come together or not at all.

A receiver trusts a caller by being configured with the caller's `.pub` file, or a directory of
them (`load_trusted_keys`).

Every failure is a `KeyFileError` naming the path; key material never appears in a message.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from darktower.auth.errors import KeyFileError
from darktower.auth.service_types import SERVICE_NAMES, ServiceType
from darktower.common.errors import InvalidField
from darktower.common.ids import validate_id

__all__ = [
    "INSTANCE_HEADER",
    "KEY_NAMES",
    "SERVICE_HEADER",
    "KeyBinding",
    "ServiceKey",
    "TrustedKey",
    "generate_instance_key_files",
    "generate_key_files",
    "key_id",
    "load_private_key",
    "load_public_keys",
    "load_service_key",
    "load_trusted_keys",
]

logger = logging.getLogger(__name__)

# One key pair per service type, named by the CLI short names.
KEY_NAMES = ("gc", "mc", "mh")

_PRIVATE_MODE = 0o600
_PUBLIC_MODE = 0o644

# The RFC 7468 explanatory lines that bind a key file to one instance.
SERVICE_HEADER = "darktower-service"
INSTANCE_HEADER = "darktower-instance"
_HEADER_PREFIX = "darktower-"
_PEM_BEGIN = b"-----BEGIN "


@dataclass(frozen=True)
class KeyBinding:
    """The instance a key file is bound to: `service_type` and `instance_id` (id rule)."""

    service_type: ServiceType
    instance_id: str


@dataclass(frozen=True)
class TrustedKey:
    """A public key a receiver trusts, and the instance it is bound to.

    `service_type` and `instance_id` are None for an unbound (legacy trio) key. `path` is the
    file it came from (None when built in memory), for messages.
    """

    public_key: Ed25519PublicKey
    kid: str
    service_type: ServiceType | None
    instance_id: str | None
    path: Path | None = None

    @classmethod
    def unbound(cls, public_key: Ed25519PublicKey) -> TrustedKey:
        return cls(public_key, key_id(public_key), None, None)

    @classmethod
    def bound(
        cls, public_key: Ed25519PublicKey, service_type: ServiceType, instance_id: str
    ) -> TrustedKey:
        return cls(public_key, key_id(public_key), ServiceType(service_type), instance_id)


@dataclass(frozen=True)
class ServiceKey:
    """A private key and the instance it is bound to (both None for a legacy trio key)."""

    private_key: Ed25519PrivateKey
    service_type: ServiceType | None
    instance_id: str | None

    def __repr__(self) -> str:  # never the key material
        return f"ServiceKey(service_type={self.service_type!r}, instance_id={self.instance_id!r})"


def generate_key_files(out_dir: Path, *, force: bool = False) -> list[Path]:
    """Write a fresh key pair per name in KEY_NAMES into `out_dir` (created if needed).

    Returns the written paths, `.key` then `.pub` per name. Without `force`, raises
    `KeyFileError` if any of the six files exists, before writing anything — a key that
    peers already trust must not be replaced by accident.
    """
    targets = [(out_dir / f"{name}.key", out_dir / f"{name}.pub", None) for name in KEY_NAMES]
    return _generate(out_dir, targets, force=force)


def generate_instance_key_files(
    out_dir: Path, *, service: str, instance_id: str, force: bool = False
) -> list[Path]:
    """Write `out_dir/<instance_id>.key` (0600) and `.pub`, both bound to (service, instance).

    Raises ValueError for a `service` not in KEY_NAMES or an `instance_id` that breaks the id
    rule (checked before anything is written), `KeyFileError` like `generate_key_files`.
    """
    binding = _binding(service, instance_id)
    targets = [(out_dir / f"{instance_id}.key", out_dir / f"{instance_id}.pub", binding)]
    return _generate(out_dir, targets, force=force)


def _binding(service: str, instance_id: str) -> KeyBinding:
    if service not in SERVICE_NAMES:
        raise ValueError(f"unknown service {service!r}; expected one of {', '.join(KEY_NAMES)}")
    try:
        validate_id(instance_id, "instance id")
    except InvalidField as exc:
        raise ValueError(str(exc)) from None
    return KeyBinding(SERVICE_NAMES[service], instance_id)


def _generate(
    out_dir: Path, targets: Sequence[tuple[Path, Path, KeyBinding | None]], *, force: bool
) -> list[Path]:
    if not force:
        for path in (p for key_path, pub_path, _ in targets for p in (key_path, pub_path)):
            if path.exists():
                raise KeyFileError(path, "already exists (use --force to overwrite)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KeyFileError(out_dir, f"cannot create directory ({exc.strerror})") from exc

    written: list[Path] = []
    for key_path, pub_path, binding in targets:
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
        header = _render_binding(binding)
        _write_atomically(key_path, header + private_pem, _PRIVATE_MODE, force=force)
        _write_atomically(pub_path, header + public_pem, _PUBLIC_MODE, force=force)
        written += [key_path, pub_path]
    return written


def _render_binding(binding: KeyBinding | None) -> bytes:
    if binding is None:
        return b""
    service = next(name for name, t in SERVICE_NAMES.items() if t is binding.service_type)
    return f"{SERVICE_HEADER}: {service}\n{INSTANCE_HEADER}: {binding.instance_id}\n".encode()


def _split_binding(path: Path, data: bytes) -> tuple[KeyBinding | None, bytes]:
    """The binding declared before the PEM block, and the PEM block itself."""
    start = data.find(_PEM_BEGIN)
    if start < 0:
        return None, data  # not PEM: the loader says so
    fields: dict[str, str] = {}
    for raw_line in data[:start].splitlines():
        line = raw_line.decode("utf-8", "replace").strip()
        if not line.startswith(_HEADER_PREFIX):
            continue  # RFC 7468 explanatory text
        name, sep, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or name not in (SERVICE_HEADER, INSTANCE_HEADER):
            raise KeyFileError(path, f"unknown key binding line {name!r}")
        if name in fields:
            raise KeyFileError(path, f"{name} given twice")
        fields[name] = value
    if not fields:
        return None, data[start:]
    if set(fields) != {SERVICE_HEADER, INSTANCE_HEADER}:
        raise KeyFileError(path, f"{SERVICE_HEADER} and {INSTANCE_HEADER} must come together")
    try:
        binding = _binding(fields[SERVICE_HEADER], fields[INSTANCE_HEADER])
    except ValueError as exc:
        raise KeyFileError(path, f"bad key binding: {exc}") from None
    return binding, data[start:]


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
    """Load an unencrypted PEM Ed25519 private key; `KeyFileError` if it is anything else.

    A bound key file loads too (its binding is dropped: `load_service_key` keeps it)."""
    return load_service_key(path).private_key


def load_service_key(path: Path) -> ServiceKey:
    """Load a private key file with its binding (None for a legacy trio key)."""
    binding, data = _split_binding(path, _read(path))
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
    if binding is None:
        return ServiceKey(key, None, None)
    return ServiceKey(key, binding.service_type, binding.instance_id)


def load_public_keys(paths: Iterable[Path]) -> list[Ed25519PublicKey]:
    """Load PEM (SubjectPublicKeyInfo) Ed25519 public keys, in order, bindings dropped."""
    return [_load_trusted_key(path).public_key for path in paths]


def load_trusted_keys(paths: Iterable[Path]) -> list[TrustedKey]:
    """Load the public keys a receiver trusts, each with its binding, in order.

    A path that is a directory stands for every `*.pub` file directly in it, in name order (an
    empty directory is an error: trusting nobody is a misconfiguration). Legacy trio files load
    as unbound keys (`binding` None).
    """
    keys: list[TrustedKey] = []
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.glob("*.pub") if p.is_file())
            if not files:
                raise KeyFileError(path, "directory holds no *.pub key file")
            keys += [_load_trusted_key(p) for p in files]
        else:
            keys.append(_load_trusted_key(path))
    return keys


def _load_trusted_key(path: Path) -> TrustedKey:
    binding, data = _split_binding(path, _read(path))
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(path, "not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(path, "not an Ed25519 public key")
    if binding is None:
        return TrustedKey(key, key_id(key), None, None, path)
    return TrustedKey(key, key_id(key), binding.service_type, binding.instance_id, path)


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short stable fingerprint of a public key, used as the JWT `kid`.

    The first 16 hex digits of SHA-256 over the 32 raw key bytes: the same key always gets the
    same id, in every process, and different keys collide with negligible probability.
    """
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]
