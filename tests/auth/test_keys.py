"""Key files: layout, modes, refusal to overwrite, loading errors that name the path only."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from darktower.auth.errors import KeyFileError
from darktower.auth.keys import (
    KEY_NAMES,
    generate_key_files,
    key_id,
    load_private_key,
    load_public_keys,
)


def test_generate_writes_a_matching_pair_per_service(tmp_path: Path) -> None:
    out = tmp_path / "keys"  # does not exist yet: generate creates it
    written = generate_key_files(out)

    assert sorted(p.name for p in written) == sorted(
        f"{name}.{ext}" for name in KEY_NAMES for ext in ("key", "pub")
    )
    ids = set()
    for name in KEY_NAMES:
        private = load_private_key(out / f"{name}.key")
        (public,) = load_public_keys([out / f"{name}.pub"])
        assert key_id(private.public_key()) == key_id(public)
        ids.add(key_id(public))
        assert (out / f"{name}.key").read_text().startswith("-----BEGIN PRIVATE KEY-----")
        assert (out / f"{name}.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert len(ids) == len(KEY_NAMES), "each service gets its own key"
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temp files left"


def test_private_key_files_are_mode_0600(tmp_path: Path) -> None:
    generate_key_files(tmp_path)
    for name in KEY_NAMES:
        assert stat.S_IMODE((tmp_path / f"{name}.key").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / f"{name}.pub").stat().st_mode) & 0o077 == 0o044


@pytest.mark.parametrize("existing", ["gc.key", "mh.pub"])
def test_generate_refuses_to_overwrite_and_writes_nothing(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).write_text("keep me")

    with pytest.raises(KeyFileError) as info:
        generate_key_files(tmp_path)

    assert info.value.path == tmp_path / existing
    assert (tmp_path / existing).read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == [existing]


def test_generate_with_force_replaces_keys_and_keeps_0600(tmp_path: Path) -> None:
    generate_key_files(tmp_path)
    old = key_id(load_private_key(tmp_path / "gc.key").public_key())
    (tmp_path / "gc.key").chmod(0o644)

    generate_key_files(tmp_path, force=True)

    assert key_id(load_private_key(tmp_path / "gc.key").public_key()) != old
    assert stat.S_IMODE((tmp_path / "gc.key").stat().st_mode) == 0o600


def test_key_id_is_stable_short_hex() -> None:
    key = Ed25519PrivateKey.generate().public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    same = serialization.load_der_public_key(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    assert len(raw) == 32
    kid = key_id(key)
    assert len(kid) == 16
    int(kid, 16)
    assert isinstance(same, type(key))
    assert key_id(same) == kid
    assert key_id(Ed25519PrivateKey.generate().public_key()) != kid


def _ec_pem_files(tmp_path: Path) -> tuple[Path, Path]:
    ec = generate_private_key(SECP256R1())
    priv = tmp_path / "ec.key"
    pub = tmp_path / "ec.pub"
    priv.write_bytes(
        ec.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub.write_bytes(
        ec.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return priv, pub


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        pytest.param(lambda d: d / "absent.key", "not found", id="missing"),
        pytest.param(lambda d: d, "directory", id="directory"),
        pytest.param(lambda d: d / "gc.pub", "not an unencrypted PEM private key", id="public"),
        pytest.param(lambda d: _ec_pem_files(d)[0], "not an Ed25519 private key", id="ec"),
    ],
)
def test_load_private_key_errors_name_the_path_not_the_content(
    tmp_path: Path, make: Callable[[Path], Path], problem: str
) -> None:
    generate_key_files(tmp_path)
    path = make(tmp_path)

    with pytest.raises(KeyFileError) as info:
        load_private_key(path)

    message = str(info.value)
    assert str(path) in message
    assert problem in message
    assert "BEGIN" not in message


def test_load_public_keys_rejects_private_and_foreign_keys(tmp_path: Path) -> None:
    generate_key_files(tmp_path)
    _, ec_pub = _ec_pem_files(tmp_path)

    with pytest.raises(KeyFileError, match="not a PEM public key"):
        load_public_keys([tmp_path / "gc.pub", tmp_path / "gc.key"])
    with pytest.raises(KeyFileError, match="not an Ed25519 public key"):
        load_public_keys([ec_pub])
    with pytest.raises(KeyFileError, match="not found"):
        load_public_keys([tmp_path / "nope.pub"])
    assert len(load_public_keys(tmp_path / f"{n}.pub" for n in KEY_NAMES)) == 3
