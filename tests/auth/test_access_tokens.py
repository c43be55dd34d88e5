"""Access tokens and API keys (`darktower.auth.access_tokens`, `darktower.auth.api_keys`): the
claims a token grants, every way a forged or stale token is refused, key files and their
reload, and the two commands (`darktower api-key create`, `darktower access-token`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key as rsa_key
from typer.testing import CliRunner

from darktower.auth.access_tokens import (
    MAX_TTL_SECONDS,
    AccessTokenVerifier,
    InvalidAccessToken,
    mint_access_token,
)
from darktower.auth.api_keys import (
    ApiKey,
    ApiKeyError,
    ApiKeyRing,
    generate_api_key,
    load_api_key_file,
    write_api_key_file,
)
from darktower.cli import app

KEY = ApiKey("APItestkey00001", "s" * 43)
OTHER = ApiKey("APItestkey00002", "t" * 43)
NOW = 1_800_000_000


def verifier(*keys: ApiKey) -> AccessTokenVerifier:
    secrets = {k.key_id: k.secret for k in keys or (KEY,)}
    return AccessTokenVerifier(secrets.get)


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": KEY.key_id,
        "sub": "ada",
        "iat": NOW,
        "exp": NOW + 600,
        "meeting": "standup",
        "name": "Ada",
        "role": "participant",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def signed(payload: dict[str, Any], secret: str = KEY.secret, alg: str = "HS256") -> str:
    """Signed by hand (HMAC), so that claims PyJWT would not encode can be sent too."""
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
    signing_input = b64({"alg": alg, "typ": "JWT"}) + "." + b64(payload)
    mac = hmac.new(secret.encode(), signing_input.encode(), digest).digest()
    return signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# --- what a valid token grants --------------------------------------------------------------


def test_a_minted_token_grants_its_claims() -> None:
    token = mint_access_token(
        KEY, identity="ada", meeting_id="standup", name="Ada", role="host", now=NOW
    )
    grant = verifier().verify(token, now=NOW + 1)
    assert (grant.key_id, grant.identity, grant.name, grant.meeting_id) == (
        KEY.key_id,
        "ada",
        "Ada",
        "standup",
    )
    assert (grant.role, grant.admin, grant.expires_at) == ("host", False, NOW + 3600)


def test_an_admin_token_needs_no_meeting_and_role_defaults_to_participant() -> None:
    token = mint_access_token(KEY, identity="ops", meeting_id=None, admin=True, now=NOW)
    grant = verifier().verify(token, now=NOW)
    assert (grant.admin, grant.meeting_id, grant.role, grant.name) == (
        True,
        None,
        "participant",
        None,
    )


def test_the_verifier_asks_for_the_secret_per_token() -> None:
    """A key added to the source later (a reload) is trusted at once."""
    secrets: dict[str, str] = {}
    check = AccessTokenVerifier(secrets.get)
    token = mint_access_token(OTHER, identity="ada", meeting_id="m", now=NOW)
    with pytest.raises(InvalidAccessToken):
        check.verify(token, now=NOW)
    secrets[OTHER.key_id] = OTHER.secret
    assert check.verify(token, now=NOW).identity == "ada"


# --- attacks ---------------------------------------------------------------------------------

NONE_TOKEN = b64({"alg": "none", "typ": "JWT"}) + "." + b64(claims()) + "."


def _rs256() -> str:
    return jwt.encode(claims(), rsa_key(public_exponent=65537, key_size=2048), algorithm="RS256")


def _es256() -> str:
    return jwt.encode(claims(), generate_private_key(SECP256R1()), algorithm="ES256")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "token_invalid"),
        ("garbage", "token_invalid"),
        ("a.b.c", "token_invalid"),
        ("x" * 5000, "token_invalid"),
        (NONE_TOKEN, "token_invalid"),
        (signed(claims(), secret="s" * 64, alg="HS512"), "token_invalid"),
        (signed(claims(), secret="w" * 43), "token_invalid"),  # HS256, a wrong secret
        (signed(claims(iss="APIunknown00001")), "unknown_key"),
        (signed(claims(iss=None)), "unknown_key"),
        (signed(claims(iss=7)), "unknown_key"),
        (signed(claims(iat=NOW - 7200, exp=NOW - 6)), "token_expired"),
        (signed(claims(iat=NOW, exp=NOW + 48 * 3600)), "lifetime_too_long"),
        (signed(claims(iat=NOW, exp=NOW + MAX_TTL_SECONDS + 1)), "lifetime_too_long"),
        (signed(claims(iat=NOW + 60, exp=NOW + 600)), "token_invalid"),  # issued in the future
        (signed(claims(sub=None)), "token_invalid"),
        (signed(claims(sub="a b")), "token_invalid"),
        (signed(claims(sub="\u0430da")), "token_invalid"),  # a Cyrillic look-alike id
        (signed(claims(meeting=None)), "token_invalid"),
        (signed(claims(meeting="a/b")), "token_invalid"),
        (signed(claims(meeting=5)), "token_invalid"),
        (signed(claims(role="admin")), "token_invalid"),
        (signed(claims(admin="yes")), "token_invalid"),
        (signed(claims(name=5)), "token_invalid"),
        (signed(claims(exp=None)), "token_invalid"),
        (signed(claims(iat=None)), "token_invalid"),
        (signed(claims(iat="now")), "token_invalid"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None,
)
def test_refused_tokens(token: str, reason: str) -> None:
    with pytest.raises(InvalidAccessToken) as caught:
        verifier().verify(token, now=NOW)
    assert caught.value.reason == reason
    assert KEY.secret not in str(caught.value)


@pytest.mark.parametrize("make", [_rs256, _es256])
def test_asymmetric_algorithms_are_refused(make: Any) -> None:
    with pytest.raises(InvalidAccessToken) as caught:
        verifier().verify(make(), now=NOW)
    assert caught.value.reason == "token_invalid"


def test_the_public_secret_trick_is_refused() -> None:
    """HS256 signed with another key's secret, claiming that other key's id, is refused when
    that key is not trusted; a trusted key's id with the other secret is a bad signature."""
    forged = signed(claims(iss=KEY.key_id), secret=OTHER.secret)
    with pytest.raises(InvalidAccessToken) as caught:
        verifier(KEY).verify(forged, now=NOW)
    assert caught.value.reason == "token_invalid"


@pytest.mark.parametrize(("skew", "ok"), [(0, True), (4, True), (5, False), (60, False)])
def test_expiry_has_five_seconds_of_leeway(skew: int, ok: bool) -> None:
    token = signed(claims(iat=NOW - 600, exp=NOW))
    if ok:
        assert verifier().verify(token, now=NOW + skew).identity == "ada"
        return
    with pytest.raises(InvalidAccessToken) as caught:
        verifier().verify(token, now=NOW + skew)
    assert caught.value.reason == "token_expired"


def test_a_leeway_over_five_seconds_is_refused() -> None:
    with pytest.raises(ValueError, match="leeway"):
        AccessTokenVerifier({}.get, leeway_seconds=6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"meeting_id": None}, "needs a meeting"),
        ({"ttl_seconds": MAX_TTL_SECONDS + 1}, "ttl"),
        ({"ttl_seconds": 0}, "ttl"),
        ({"identity": "a b"}, "identity"),
        ({"name": "Admin\u200b"}, "name"),
        ({"meeting_id": "a/b"}, "meeting"),
    ],
)
def test_minting_refuses_what_the_gc_would(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"identity": "ada", "meeting_id": "m"} | kwargs
    with pytest.raises(ValueError, match=match):
        mint_access_token(KEY, **args)


# --- key files -------------------------------------------------------------------------------


def test_a_key_file_is_0600_and_round_trips(tmp_path: Path) -> None:
    key = generate_api_key()
    path = tmp_path / "k" / "api.json"
    write_api_key_file(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_api_key_file(path) == key
    assert key.secret not in repr(key)
    assert len(key.secret) >= 43 and key.key_id.startswith("API")


def test_a_key_file_is_not_overwritten_without_force(tmp_path: Path) -> None:
    path = tmp_path / "api.json"
    first, second = generate_api_key(), generate_api_key()
    write_api_key_file(path, first)
    with pytest.raises(FileExistsError):
        write_api_key_file(path, second)
    assert load_api_key_file(path) == first
    write_api_key_file(path, second, force=True)
    assert load_api_key_file(path) == second
    assert [p.name for p in tmp_path.iterdir()] == ["api.json"]  # no temporary left


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("not json", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"key_id": "nope", "secret": "' + "s" * 43 + '"}', "key_id"),
        ('{"key_id": "APIabcdefabcdef", "secret": "short"}', "secret"),
        ('{"key_id": "APIabcdefabcdef"}', "secret"),
    ],
)
def test_bad_key_files_are_named_without_secrets(tmp_path: Path, content: str, why: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ApiKeyError, match=why) as caught:
        load_api_key_file(path)
    assert str(path) in str(caught.value) and "short" not in str(caught.value)


def test_the_ring_reloads_and_keeps_its_keys_on_a_bad_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "api.json"
    write_api_key_file(path, KEY)
    ring = ApiKeyRing([path])
    assert ring.secret(KEY.key_id) == KEY.secret and ring.secret(OTHER.key_id) is None
    write_api_key_file(path, OTHER, force=True)
    with caplog.at_level(logging.INFO):
        assert ring.reload()
    assert ring.secret(OTHER.key_id) == OTHER.secret and ring.secret(KEY.key_id) is None
    path.write_text("broken")
    with caplog.at_level(logging.INFO):
        assert not ring.reload()
    assert ring.secret(OTHER.key_id) == OTHER.secret
    assert KEY.secret not in caplog.text and OTHER.secret not in caplog.text
    assert "previous ones stay" in caplog.text
    assert OTHER.secret not in repr(ring)


def test_a_bad_key_file_at_start_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ApiKeyError):
        ApiKeyRing([tmp_path / "missing.json"])


# --- the commands ----------------------------------------------------------------------------


def test_api_key_create_and_access_token_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "api-key.json"
    created = runner.invoke(app, ["api-key", "create", "--out", str(path)])
    assert created.exit_code == 0, created.output
    key = load_api_key_file(path)
    assert created.output.strip() == key.key_id and key.secret not in created.output
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = runner.invoke(app, ["api-key", "create", "--out", str(path)])
    assert again.exit_code == 2 and "--force" in again.output
    assert load_api_key_file(path) == key

    args = ["access-token", "--key-file", str(path), "--meeting", "standup"]
    printed = runner.invoke(app, [*args, "--identity", "ada", "--name", "Ada", "--role", "host"])
    assert printed.exit_code == 0, printed.output
    grant = AccessTokenVerifier({key.key_id: key.secret}.get).verify(printed.output.strip())
    assert (grant.identity, grant.name, grant.role, grant.meeting_id) == (
        "ada",
        "Ada",
        "host",
        "standup",
    )
    admin = runner.invoke(
        app, ["access-token", "--key-file", str(path), "--identity", "ops", "--admin"]
    )
    assert admin.exit_code == 0, admin.output
    assert AccessTokenVerifier({key.key_id: key.secret}.get).verify(admin.output.strip()).admin

    for bad in (
        ["--identity", "ada", "--ttl", str(48 * 3600)],
        ["--identity", "a b"],
        ["--identity", "ada", "--role", "owner"],
        ["--identity", "ada", "--name", "evil\u202egnp.exe"],
    ):
        refused = runner.invoke(app, [*args, *bad])
        assert refused.exit_code == 2, (bad, refused.output)
        assert key.secret not in refused.output
    no_meeting = runner.invoke(app, ["access-token", "--key-file", str(path), "--identity", "ada"])
    assert no_meeting.exit_code == 2 and "meeting" in no_meeting.output
