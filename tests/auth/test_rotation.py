"""Key rotation without restart, piece by piece: a verifier's keys replaced, the trusted key
files reloaded (`KeyRing`), the own signing key reloaded (`ReloadableSigningKey`, token
providers follow), the retired key published for a while (`PublishedKeys`)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from darktower.auth.client import ServiceTokenProvider, SigningKey
from darktower.auth.errors import AuthenticationFailed, KeyFileError
from darktower.auth.join_tokens import InvalidJoinToken, JoinTokenVerifier, mint_join_token
from darktower.auth.keyring import KeyRing, ReloadableSigningKey
from darktower.auth.keys import (
    TrustedKey,
    generate_instance_key_files,
    key_id,
    load_private_key,
    load_trusted_keys,
)
from darktower.auth.publishing import PublishedKeys
from darktower.auth.tokens import SCOPE_MC, ServiceType, TokenVerifier, mint_service_token

GC = ServiceType.GLOBAL_CONTROLLER
MC = ServiceType.MEETING_CONTROLLER


def gc_verifier(keys: Sequence[TrustedKey | Ed25519PublicKey]) -> TokenVerifier:
    return TokenVerifier(
        keys,
        required_scope=SCOPE_MC,
        allowed_callers={GC},
        allow_unbound_keys=False,
    )


def generate(directory: Path, instance: str, service: str = "gc") -> tuple[Path, Path]:
    generate_instance_key_files(directory, service=service, instance_id=instance, force=True)
    return directory / f"{instance}.key", directory / f"{instance}.pub"


def token(key_path: Path, issuer: str = "gc-1") -> str:
    return mint_service_token(
        load_private_key(key_path), service_type=GC, scope=SCOPE_MC, issuer=issuer
    )


def test_replace_keys_forgets_remembered_tokens(tmp_path: Path) -> None:
    old_key, old_pub = generate(tmp_path / "old", "gc-1")
    new_key, new_pub = generate(tmp_path / "new", "gc-1")
    verifier = gc_verifier(load_trusted_keys([old_pub]))
    old_token = token(old_key)
    verifier.verify(old_token)  # now remembered
    verifier.replace_keys(load_trusted_keys([new_pub]))
    with pytest.raises(AuthenticationFailed) as refused:
        verifier.verify(old_token)
    assert refused.value.reason == "unknown_key"
    assert verifier.verify(token(new_key)).subject == "gc-1"
    with pytest.raises(ValueError, match="at least one"):
        verifier.replace_keys([])
    assert verifier.verify(token(new_key)).subject == "gc-1"  # a refused set changes nothing


def test_replace_keys_by_type_keeps_each_key_to_its_type(tmp_path: Path) -> None:
    mc_key = Ed25519PrivateKey.generate().public_key()
    verifier = TokenVerifier.from_key_sets(
        {MC: [mc_key]}, required_scope="service.write.gc", allowed_callers={MC}
    )
    with pytest.raises(ValueError, match="two service types"):
        verifier.replace_keys({MC: [mc_key], ServiceType.MEDIA_HANDLER: [mc_key]})
    assert verifier.kids == {key_id(mc_key)}


async def test_verify_refreshing_asks_the_hook_once(tmp_path: Path) -> None:
    old_key, old_pub = generate(tmp_path / "old", "gc-1")
    new_key, new_pub = generate(tmp_path / "new", "gc-1")
    verifier = gc_verifier(load_trusted_keys([old_pub]))
    asked: list[str] = []

    async def learn(kid: str) -> bool:
        asked.append(kid)
        verifier.replace_keys(load_trusted_keys([old_pub, new_pub]))
        return True

    verifier.on_unknown_kid(learn)
    claims = await verifier.verify_refreshing(token(new_key))
    assert claims.subject == "gc-1"
    assert asked == [load_trusted_keys([new_pub])[0].kid]
    # A bad signature is no reason to ask.
    forged = token(old_key)[:-4] + "AAAA"
    with pytest.raises(AuthenticationFailed):
        await verifier.verify_refreshing(forged)
    assert len(asked) == 1


async def test_verify_refreshing_without_news_refuses() -> None:
    verifier = gc_verifier([Ed25519PrivateKey.generate().public_key()])

    async def nothing(kid: str) -> bool:
        return False

    verifier.on_unknown_kid(nothing)
    stranger = mint_service_token(
        Ed25519PrivateKey.generate(), service_type=GC, scope=SCOPE_MC, issuer="gc-1"
    )
    with pytest.raises(AuthenticationFailed) as refused:
        await verifier.verify_refreshing(stranger)
    assert refused.value.reason == "unknown_key"


def test_key_ring_reload_adds_and_removes_and_logs_kids_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trusted = tmp_path / "trusted"
    generate(trusted, "gc-1")
    ring = KeyRing("trusted GC keys", [trusted])
    verifier = gc_verifier(ring.keys)
    joins = JoinTokenVerifier([k.public_key for k in ring.keys])
    ring.subscribe(verifier.replace_keys)
    ring.subscribe(joins.replace_keys)
    old_kid = next(iter(ring.kids))

    # A new key next to the old one: both trusted.
    shutil.move(trusted / "gc-1.key", tmp_path / "gc-1.old.key")
    new_key, _ = generate(tmp_path / "next", "gc-1")
    shutil.copy(tmp_path / "next" / "gc-1.pub", trusted / "gc-1.next.pub")
    with caplog.at_level(logging.INFO, logger="darktower.auth.keyring"):
        assert ring.reload() is True
    new_kid = (ring.kids - {old_kid}).pop()
    assert verifier.verify(token(tmp_path / "gc-1.old.key")).subject == "gc-1"
    assert verifier.verify(token(new_key)).subject == "gc-1"
    join = mint_join_token(
        load_private_key(new_key),
        meeting_id="m-1",
        user_id="u-1",
        display_name="U",
        issuer="gc-1",
    )
    assert joins.verify(join).meeting_id == "m-1"

    # The old one removed: refused from now on.
    (trusted / "gc-1.pub").unlink()
    with caplog.at_level(logging.INFO, logger="darktower.auth.keyring"):
        assert ring.reload() is True
    with pytest.raises(AuthenticationFailed):
        verifier.verify(token(tmp_path / "gc-1.old.key"))
    lines = [r.getMessage() for r in caplog.records]
    assert f"trusted GC keys reloaded: added ['{new_kid}'], removed none" in lines
    assert f"trusted GC keys reloaded: added none, removed ['{old_kid}']" in lines
    assert not any("BEGIN" in line or "MCow" in line for line in lines)
    assert ring.reload() is False  # nothing changed


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: (d / "gc-1.pub").write_text("not a key"),
        lambda d: [p.unlink() for p in d.glob("*.pub")],  # nobody left to trust
        lambda d: (d / "gc-1.pub").write_text(
            "darktower-service: gc\n" + (d / "gc-1.pub").read_text()  # service twice
        ),
    ],
    ids=["garbage", "empty-directory", "bad-binding"],
)
def test_a_bad_reload_keeps_the_keys_with_one_error_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: object
) -> None:
    trusted = tmp_path / "trusted"
    key, _ = generate(trusted, "gc-1")
    ring = KeyRing("trusted GC keys", [trusted])
    verifier = gc_verifier(ring.keys)
    ring.subscribe(verifier.replace_keys)
    damage(trusted)  # type: ignore[operator]
    with caplog.at_level(logging.INFO, logger="darktower.auth.keyring"):
        assert ring.reload() is False
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in caplog.records]
    assert errors[0].getMessage().startswith("trusted GC keys not reloaded, keeping 1 keys: ")
    assert verifier.verify(token(key)).subject == "gc-1"


def test_a_key_file_at_start_must_load(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError):
        KeyRing("trusted GC keys", [tmp_path / "missing.pub"])


def test_the_signing_key_reload_switches_every_provider(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key_path, _ = generate(tmp_path, "gc-1")
    signing = ReloadableSigningKey(key_path, service_type=GC, instance_id="gc-1")
    providers = [
        ServiceTokenProvider(
            signing.signing_key,
            service_type=GC,
            scope=SCOPE_MC,
            issuer="gc-1",
            audience=mc,
        )
        for mc in ("mc-1", "mc-2")
    ]
    old_kid = signing.signing_key.kid
    before = [p.token() for p in providers]
    assert [p.token() for p in providers] == before  # cached
    generate(tmp_path, "gc-1")  # the file now holds a new key
    with caplog.at_level(logging.INFO, logger="darktower.auth.keyring"):
        assert signing.reload() is True
    new_kid = signing.signing_key.kid
    assert new_kid != old_kid
    for provider, old in zip(providers, before, strict=True):
        fresh = provider.token()
        assert fresh != old
        assert jwt.get_unverified_header(fresh)["kid"] == new_kid
    assert f"signing key reloaded: kid {new_kid} replaces {old_kid}" in caplog.text
    assert signing.reload() is False  # same file, same key


def test_a_signing_key_of_another_instance_is_refused_on_reload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key_path, _ = generate(tmp_path, "gc-1")
    signing = ReloadableSigningKey(key_path, service_type=GC, instance_id="gc-1")
    kid = signing.signing_key.kid
    other, _ = generate(tmp_path, "gc-2")
    shutil.copy(other, key_path)
    with caplog.at_level(logging.INFO, logger="darktower.auth.keyring"):
        assert signing.reload() is False
    assert signing.signing_key.kid == kid
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        f"signing key not reloaded, keeping kid {kid}: {key_path}: bound to gc-2, not gc-1"
    ]
    with pytest.raises(KeyFileError, match="bound to gc-2"):
        ReloadableSigningKey(other, service_type=GC, instance_id="gc-1")


def test_signing_key_repr_shows_the_fingerprint_only() -> None:
    private = Ed25519PrivateKey.generate()
    signing = SigningKey(private)
    assert repr(signing) == f"SigningKey(kid={key_id(private.public_key())!r}, version=0)"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_replaced_key_stays_published_for_the_retire_time(tmp_path: Path) -> None:
    key_path, _ = generate(tmp_path, "gc-1")
    clock = Clock()
    signing = ReloadableSigningKey(key_path, service_type=GC, instance_id="gc-1")
    published = PublishedKeys(signing, retire_seconds=30, clock=clock)
    first = published.jwks_keys()
    assert [k.kid for k in first] == [signing.signing_key.kid]
    assert (first[0].service_type, first[0].instance_id) == (GC, "gc-1")
    generate(tmp_path, "gc-1")
    assert published.reload() is True
    assert [k.kid for k in published.jwks_keys()] == [signing.signing_key.kid, first[0].kid]
    clock.now += 29.9
    assert len(published.jwks_keys()) == 2
    clock.now += 0.2
    assert [k.kid for k in published.jwks_keys()] == [signing.signing_key.kid]


def test_a_join_token_of_an_untrusted_key_is_refused_after_replace() -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    joins = JoinTokenVerifier([old.public_key()])
    args = {"meeting_id": "m-1", "user_id": "u", "display_name": "U", "issuer": "gc-1"}
    joins.replace_keys([new.public_key()])
    with pytest.raises(InvalidJoinToken):
        joins.verify(mint_join_token(old, **args))
    assert joins.verify(mint_join_token(new, **args)).user_id == "u"
