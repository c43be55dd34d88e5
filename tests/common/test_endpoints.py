"""The shared endpoint rule, value by value at each boundary."""

from __future__ import annotations

import pytest

from darktower.common.endpoints import validate_endpoint
from darktower.common.errors import InvalidField

BAD_URL = "must be an http:// or https:// URL with a host"
TOO_LONG = "must be at most 255 bytes"
BAD_CHAR = "must not contain whitespace or control characters"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("https://mh-1.example:4433/path", id="https-port-path"),
        pytest.param("http://mh", id="http-bare-host"),
        pytest.param("http://mc-1:50052", id="single-label-host-port"),
        pytest.param("https://10.0.0.1:4433", id="ipv4"),
        pytest.param("https://[::1]:4433/", id="ipv6"),
        pytest.param("https://h/" + "p" * 245, id="255-bytes"),
    ],
)
def test_endpoint_accepted(value: str) -> None:
    assert validate_endpoint(value, "grpc_endpoint") == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("", "required", id="empty"),
        pytest.param("ftp://x", BAD_URL, id="ftp"),
        pytest.param("http://", BAD_URL, id="no-host"),
        pytest.param("https://:4433/", BAD_URL, id="port-no-host"),
        pytest.param("https://a b", BAD_CHAR, id="space"),
        pytest.param("https://a\x7fb", BAD_CHAR, id="del"),
        pytest.param("mh.example", BAD_URL, id="no-scheme"),
        pytest.param("https://mh:99999", BAD_URL, id="port-out-of-range"),
        pytest.param("https://mh:port", BAD_URL, id="port-not-number"),
        pytest.param("https://user:secret@mh", "must not contain user info", id="credentials"),
        pytest.param("https://h/" + "p" * 246, TOO_LONG, id="256-bytes"),
        pytest.param("https://h/" + "p" * 244 + "é", TOO_LONG, id="2-byte-char-over"),
    ],
)
def test_endpoint_rejected(value: str, reason: str) -> None:
    with pytest.raises(InvalidField) as info:
        validate_endpoint(value, "grpc_endpoint")
    assert (info.value.field, info.value.reason) == ("grpc_endpoint", reason)
    assert "secret" not in str(info.value)
