"""A local certificate authority and the TLS certificates it issues (`darktower certs generate`).

Layout written by `generate_certs(DIR, name, hosts)`::

    DIR/ca.crt      the CA certificate (trusted by every peer: `*_TLS_CA_FILE`, `--tls-ca`)
    DIR/ca.key      its private key, 0600 — made once and reused, so every certificate made
                    in DIR is trusted by the same `ca.crt`
    DIR/<name>.crt  a leaf certificate for `name`: SANs from `hosts` (an IP as an IP SAN, a
                    name as a DNS SAN), both server and client auth (one file pair serves a
                    service's listener and its mTLS calls)
    DIR/<name>.key  its private key, 0600

Keys are ECDSA P-256. Made with `cryptography` alone (no openssl command). Every failure is a
`CertFileError` naming the path; key material never appears in a message.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from darktower.common.ids import ID_PATTERN

__all__ = [
    "CA_VALID_DAYS",
    "LEAF_VALID_DAYS",
    "CertFileError",
    "IssuedCert",
    "generate_certs",
    "parse_hosts",
]

CA_VALID_DAYS = 3650
LEAF_VALID_DAYS = 825  # the longest lifetime browsers accept for a server certificate
_PRIVATE_MODE = 0o600
_PUBLIC_MODE = 0o644


class CertFileError(Exception):
    """A certificate or key file cannot be read or written (the message names the path)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """What `generate_certs` wrote; `ca_reused` when DIR already held the CA."""

    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path
    ca_reused: bool


def parse_hosts(value: str) -> list[x509.GeneralName]:
    """`127.0.0.1,localhost,::1` → IP and DNS SANs; ValueError on an empty list or entry."""
    names: list[x509.GeneralName] = []
    for raw in value.split(","):
        host = raw.strip()
        if not host:
            raise ValueError("--hosts: an empty host name")
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            names.append(x509.DNSName(host))
    if not names:
        raise ValueError("--hosts: at least one host is needed")
    return names


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with `mode` from the start: a private key is never readable by others,
    not even while it is being written."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise CertFileError(path, f"cannot write ({exc.strerror or exc})") from None


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_ca(
    cert_path: Path, key_path: Path
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        raise CertFileError(cert_path, "not a readable PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        raise CertFileError(key_path, "not a readable unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise CertFileError(key_path, "is not the key of ca.crt")
    return cert, key


def _new_ca(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "darktower local CA")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key), _PRIVATE_MODE)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), _PUBLIC_MODE)
    return cert, key


def _leaf(
    name: str,
    sans: Sequence[x509.GeneralName],
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=LEAF_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def generate_certs(out_dir: Path, name: str, hosts: Sequence[x509.GeneralName]) -> IssuedCert:
    """Make (or reuse) the CA in `out_dir` and issue `<name>.crt`/`<name>.key` for `hosts`.

    `name` follows the id rule (it becomes a file name). A leaf pair already there is replaced
    (certificates are cheap to reissue, peers trust the CA, not the leaf)."""
    if not ID_PATTERN.fullmatch(name) or name == "ca":
        raise ValueError(f"--name {name!r}: letters, digits, - and _ only, and not 'ca'")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CertFileError(out_dir, f"cannot create ({exc.strerror or exc})") from None
    ca_cert_path, ca_key_path = out_dir / "ca.crt", out_dir / "ca.key"
    reused = ca_cert_path.exists() and ca_key_path.exists()
    if reused:
        ca_cert, ca_key = _load_ca(ca_cert_path, ca_key_path)
    else:
        ca_cert, ca_key = _new_ca(ca_cert_path, ca_key_path)
    cert, key = _leaf(name, hosts, ca_cert, ca_key)
    cert_path, key_path = out_dir / f"{name}.crt", out_dir / f"{name}.key"
    _write(key_path, _key_pem(key), _PRIVATE_MODE)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), _PUBLIC_MODE)
    return IssuedCert(ca_cert_path, ca_key_path, cert_path, key_path, reused)
