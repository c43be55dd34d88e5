"""ICE servers for the browsers (darktower.gc.ice, GC_ICE_SERVERS / GC_TURN_SECRET): the URL rule,
the TURN REST API credentials coturn verifies, and the settings that refuse to start."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from pydantic import ValidationError

from darktower.gc.ice import (
    MAX_ICE_URLS,
    IceServer,
    IceServers,
    split_ice_urls,
    turn_credential,
)
from darktower.gc.settings import GcSettings
from darktower.runtime.service_cli import settings_errors

SECRET = "Turn-Secret-9f8e7d"


def _independent(secret: str, username: str) -> str:
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


@pytest.mark.parametrize(
    ("secret", "username", "expected"),
    [
        # printf '%s' 1700000000:alice | openssl dgst -sha1 -hmac north -binary | base64
        ("north", "1700000000:alice", "Cd/49soE35ICqcJF/bCTn8Z4OyE="),
        (SECRET, "1767225600:u-0123abcd", _independent(SECRET, "1767225600:u-0123abcd")),
        ("", "0:x", _independent("", "0:x")),
    ],
)
def test_turn_credentials_are_the_rest_api_hmac(secret: str, username: str, expected: str) -> None:
    assert turn_credential(secret.encode(), username) == expected


def test_a_known_vector() -> None:
    # RFC 2202 test case 2 for HMAC-SHA1: key "Jefe", data "what do ya want for nothing?".
    digest = bytes.fromhex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
    assert turn_credential(b"Jefe", "what do ya want for nothing?") == (
        base64.b64encode(digest).decode()
    )


def test_a_join_gets_stun_as_is_and_turn_with_credentials_for_its_identity() -> None:
    ice = IceServers(
        (
            "stun:stun.example.org",
            "turn:turn.example.org:3478?transport=udp",
            "turns:t.example:443",
        ),
        secret=SECRET.encode(),
        ttl_seconds=600,
        now=lambda: 1_700_000_000.7,
    )
    stun, turn = ice.for_participant("alice")
    assert stun == IceServer(("stun:stun.example.org",))
    assert turn.urls == ("turn:turn.example.org:3478?transport=udp", "turns:t.example:443")
    assert turn.username == "1700000600:alice"
    assert turn.credential == _independent(SECRET, "1700000600:alice")
    # Another identity: another credential.
    (_, bob) = ice.for_participant("bob")
    assert bob.credential != turn.credential
    # Neither the secret nor a credential in a repr.
    for text in (repr(ice), repr(turn), str(ice)):
        assert SECRET not in text and str(turn.credential) not in text


def test_stun_only_needs_no_secret_and_turn_does() -> None:
    assert IceServers(("stun:127.0.0.1:3478",)).for_participant("a") == (
        IceServer(("stun:127.0.0.1:3478",)),
    )
    with pytest.raises(ValueError, match="secret"):
        IceServers(("turn:127.0.0.1",))


@pytest.mark.parametrize(
    "value",
    [
        "stun:stun.l.google.com:19302",
        "turn:10.0.0.1:3478?transport=tcp",
        "turns:turn.example.org:443?transport=tcp",
        "turn:[2001:db8::1]:3478",
        " stun:a.example , turn:b.example ",
    ],
)
def test_good_urls(value: str) -> None:
    assert split_ice_urls(value) == [v.strip() for v in value.split(",")]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("http://turn.example.org", "ICE URL 1 must be"),
        ("stuns:turn.example.org", "ICE URL 1 must be"),
        ("turn://turn.example.org:3478", "ICE URL 1 must be"),  # not a URI of RFC 7065
        ("stun:a.example,turn:", "ICE URL 2 must be"),
        ("turn:user:pw@turn.example.org", "ICE URL 1 must be"),  # no user info
        ("turn:t.example:0", "port outside"),
        ("turn:t.example:65536", "port outside"),
        ("turn:t.example:34x", "ICE URL 1 must be"),
        ("turn:t.example?transport=sctp", "ICE URL 1 must be"),
        ("turn:t.example?transport=udp&x=1", "ICE URL 1 must be"),
        ("stun:t.example?transport=udp", r"takes no \?transport"),
        ("turn:t_bad.example", "ICE URL 1 must be"),
        ("turn:t.example\nX-Injected: 1", "ICE URL 1 must be"),
        ("turn:" + "a" * 600, "longer than"),
        ("stun:a.example,stun:a.example", "listed twice"),
        (",".join(f"stun:s{i}.example" for i in range(MAX_ICE_URLS + 1)), "at most"),
    ],
)
def test_bad_urls_are_refused_by_position_never_echoed(value: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        split_ice_urls(value)
    assert "example" not in str(caught.value) and "aaaa" not in str(caught.value)


def _settings(**env: str) -> GcSettings:
    return GcSettings(**env)


def _refusal(**env: str) -> str:
    with pytest.raises(ValidationError) as caught:
        _settings(**env)
    return settings_errors(caught.value, "GC_")


def test_settings_default_to_no_ice_servers() -> None:
    s = _settings()
    assert s.ice_servers == [] and s.turn_secret is None
    assert s.turn_credential_ttl_seconds == 3600


def test_settings_refuse_a_bad_url_in_one_line_naming_the_setting() -> None:
    line = _refusal(ice_servers="stun:ok.example,https://evil.example/x")
    assert line.startswith("GC_ICE_SERVERS: "), line
    assert "ICE URL 2" in line and "evil" not in line and "\n" not in line


def test_settings_refuse_turn_without_a_secret() -> None:
    line = _refusal(ice_servers="turn:turn.example:3478")
    assert "GC_ICE_SERVERS" in line and "GC_TURN_SECRET" in line, line
    assert "turn.example" not in line and "\n" not in line
    # An empty secret is none.
    assert "GC_TURN_SECRET" in _refusal(ice_servers="turns:t.example", turn_secret="")


def test_settings_bound_the_credential_lifetime() -> None:
    for ttl in ("59", "86401", "-1"):
        assert _refusal(turn_credential_ttl_seconds=ttl).startswith(
            "GC_TURN_CREDENTIAL_TTL_SECONDS: "
        )


def test_the_secret_is_never_in_a_repr_or_an_error_and_is_redacted_from_logs() -> None:
    s = _settings(ice_servers="turn:t.example", turn_secret=SECRET)
    assert SECRET not in repr(s) and SECRET not in str(s)
    assert SECRET in s.secret_values()  # the log filter redacts it
    line = _refusal(ice_servers="turn:t.example", turn_secret=SECRET, staleness_seconds="0")
    assert SECRET not in line
    line = _refusal(ice_servers="ftp:x", turn_secret=SECRET)
    assert SECRET not in line
