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
    generate_instance_key_files,
    generate_key_files,
    key_id,
    load_private_key,
    load_public_keys,
    load_service_key,
    load_trusted_keys,
)
from darktower.auth.service_types import ServiceType


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


def test_instance_keys_are_bound_in_their_content(tmp_path: Path) -> None:
    written = generate_instance_key_files(tmp_path, service="mc", instance_id="mc-1")

    assert [p.name for p in written] == ["mc-1.key", "mc-1.pub"]
    assert stat.S_IMODE((tmp_path / "mc-1.key").stat().st_mode) == 0o600
    pub_text = (tmp_path / "mc-1.pub").read_text()
    assert pub_text.splitlines()[:3] == [
        "darktower-service: mc",
        "darktower-instance: mc-1",
        "-----BEGIN PUBLIC KEY-----",
    ]
    (trusted,) = load_trusted_keys([tmp_path / "mc-1.pub"])
    service_key = load_service_key(tmp_path / "mc-1.key")
    assert (trusted.service_type, trusted.instance_id) == (ServiceType.MEETING_CONTROLLER, "mc-1")
    assert (service_key.service_type, service_key.instance_id) == (trusted.service_type, "mc-1")
    assert trusted.kid == key_id(service_key.private_key.public_key())
    assert "PRIVATE" not in repr(service_key)
    # The binding is in the content: a renamed file is still mc-1's.
    (tmp_path / "mc-1.pub").rename(tmp_path / "mc-3.pub")
    (renamed,) = load_trusted_keys([tmp_path / "mc-3.pub"])
    assert renamed.instance_id == "mc-1"


def test_legacy_trio_files_load_as_unbound_keys(tmp_path: Path) -> None:
    generate_key_files(tmp_path)
    keys = load_trusted_keys([tmp_path / "mc.pub"])
    assert [(k.service_type, k.instance_id) for k in keys] == [(None, None)]
    assert load_service_key(tmp_path / "mc.key").instance_id is None


def test_a_directory_means_every_pub_file_in_it(tmp_path: Path) -> None:
    for instance in ("mc-2", "mc-1"):
        generate_instance_key_files(tmp_path, service="mc", instance_id=instance)
    (tmp_path / "notes.txt").write_text("not a key")

    keys = load_trusted_keys([tmp_path])

    assert [k.instance_id for k in keys] == ["mc-1", "mc-2"]
    assert [k.path for k in keys] == [tmp_path / "mc-1.pub", tmp_path / "mc-2.pub"]


def test_an_empty_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"no \*\.pub"):
        load_trusted_keys([tmp_path])


def test_the_other_loaders_read_bound_files_too(tmp_path: Path) -> None:
    generate_instance_key_files(tmp_path, service="gc", instance_id="gc-1")
    (public,) = load_public_keys([tmp_path / "gc-1.pub"])
    private = load_private_key(tmp_path / "gc-1.key")
    assert key_id(public) == key_id(private.public_key())


@pytest.mark.parametrize(
    ("service", "instance_id", "match"),
    [("recorder", "r-1", "unknown service"), ("mc", "", "required"), ("mc", "mc{1}", "letters")],
)
def test_instance_keys_need_a_known_service_and_a_valid_id(
    tmp_path: Path, service: str, instance_id: str, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        generate_instance_key_files(tmp_path, service=service, instance_id=instance_id)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("header", "match"),
    [
        ("darktower-service: mc\n", "must come together"),
        ("darktower-instance: mc-1\n", "must come together"),
        ("darktower-service: mc\ndarktower-instance: mc-1\ndarktower-service: mc\n", "twice"),
        ("darktower-role: admin\n", "unknown key binding"),
        ("darktower-service: xx\ndarktower-instance: mc-1\n", "unknown service"),
        ("darktower-service: mc\ndarktower-instance: mc 1\n", "letters"),
    ],
)
def test_a_bad_binding_is_refused_naming_the_file(tmp_path: Path, header: str, match: str) -> None:
    generate_key_files(tmp_path)
    pub = tmp_path / "mc.pub"
    pub.write_text(header + pub.read_text())

    with pytest.raises(KeyFileError, match=match) as info:
        load_trusted_keys([pub])

    assert info.value.path == pub


def test_other_explanatory_text_before_the_pem_block_is_ignored(tmp_path: Path) -> None:
    generate_instance_key_files(tmp_path, service="mh", instance_id="mh-1")
    pub = tmp_path / "mh-1.pub"
    pub.write_text("Ed25519 key of mh-1, made on the 30th\n" + pub.read_text())
    (key,) = load_trusted_keys([pub])
    assert key.instance_id == "mh-1"
