"""`darktower certs generate`: a local CA reused across calls, leaf certificates with the asked
SANs and both EKUs, private keys 0600, and one-line errors for what a user can fix."""

from __future__ import annotations

import ipaddress
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

DARKTOWER = [sys.executable, "-m", "darktower"]


def certs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DARKTOWER, "certs", "generate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generate_makes_a_ca_and_a_leaf_with_the_hosts_as_sans(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    done = certs("--out", str(out), "--name", "mc-1", "--hosts", "127.0.0.1,localhost,::1")
    assert done.returncode == 0, done.stderr
    assert "new CA" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["ca.crt", "ca.key", "mc-1.crt", "mc-1.key"]
    assert mode(out / "ca.key") == 0o600 and mode(out / "mc-1.key") == 0o600
    assert mode(out / "ca.crt") == 0o644 and mode(out / "mc-1.crt") == 0o644

    ca, leaf = load(out / "ca.crt"), load(out / "mc-1.crt")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    leaf.verify_directly_issued_by(ca)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]  # not "127.0.0.1" as a DNS
    ekus = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(ekus) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)


def test_the_ca_is_reused_so_every_certificate_in_a_directory_shares_it(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    assert certs("--out", str(out), "--name", "gc-1").returncode == 0
    ca_cert, ca_key = (out / "ca.crt").read_bytes(), (out / "ca.key").read_bytes()
    first_gc = (out / "gc-1.crt").read_bytes()

    again = certs("--out", str(out), "--name", "mc-1", "--hosts", "mc-1.internal")
    assert again.returncode == 0, again.stderr
    assert "reused CA" in again.stdout
    assert (out / "ca.crt").read_bytes() == ca_cert and (out / "ca.key").read_bytes() == ca_key
    assert (out / "gc-1.crt").read_bytes() == first_gc  # another name's pair is left alone
    load(out / "mc-1.crt").verify_directly_issued_by(load(out / "ca.crt"))
    mc_sans = load(out / "mc-1.crt").extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert mc_sans.value.get_values_for_type(x509.DNSName) == ["mc-1.internal"]
    # The default hosts are the loopback ones.
    gc_sans = load(out / "gc-1.crt").extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert gc_sans.value.get_values_for_type(x509.DNSName) == ["localhost"]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--name", "mc 1"], "--name 'mc 1'"),
        (["--name", "ca"], "not 'ca'"),
        (["--name", "mc-1", "--hosts", "127.0.0.1,,localhost"], "an empty host name"),
    ],
)
def test_what_a_user_can_fix_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], said: str
) -> None:
    done = certs("--out", str(tmp_path / "certs"), *args)
    assert done.returncode == 2
    assert said in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "certs" / "mc-1.crt").exists()


def test_a_ca_key_that_is_not_the_ca_certificates_is_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert certs("--out", str(a), "--name", "x").returncode == 0
    assert certs("--out", str(b), "--name", "x").returncode == 0
    (a / "ca.key").write_bytes((b / "ca.key").read_bytes())
    done = certs("--out", str(a), "--name", "y")
    assert done.returncode == 2
    assert f"{a / 'ca.key'}: is not the key of ca.crt" in done.stderr
    assert "PRIVATE KEY" not in done.stderr
