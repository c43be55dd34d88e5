"""MC settings that contradict each other: the pure rule as a table, and the settings class
refusing them with a message that names both variables."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from darktower.mc.binding import BINDING_CLOCK_SKEW_SECONDS
from darktower.mc.settings import McSettings, contradictions


def pairs(**values: Any) -> list[tuple[str, str]]:
    """(first, second) variable names of each contradiction in defaults + `values`."""
    found = contradictions(McSettings.model_construct(**values))
    return [(c.first.split("=")[0], c.second.split("=")[0]) for c in found]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, []),
        (
            {"registration_backoff_base": 31},
            [("MC_REGISTRATION_BACKOFF_BASE", "MC_REGISTRATION_BACKOFF_CAP")],
        ),
        ({"registration_backoff_base": 30}, []),
        # A grace longer than a binding token lives (TTL + skew) cannot be used to reconnect.
        (
            {"disconnect_grace_seconds": 30 + BINDING_CLOCK_SKEW_SECONDS + 1},
            [("MC_DISCONNECT_GRACE_SECONDS", "MC_BINDING_TOKEN_TTL_SECONDS")],
        ),
        ({"disconnect_grace_seconds": 30 + BINDING_CLOCK_SKEW_SECONDS}, []),
        ({"disconnect_grace_seconds": 120, "client_enabled": False}, []),
        # Listeners on one port; the client one only counts while it is served.
        (
            {"grpc_bind": "0.0.0.0:9000", "health_bind": "127.0.0.1:9000"},
            [("MC_GRPC_BIND", "MC_HEALTH_BIND")],
        ),
        (
            {"client_bind": "[::1]:8081", "health_bind": "[::1]:8081"},
            [("MC_HEALTH_BIND", "MC_CLIENT_BIND")],
        ),
        ({"client_bind": "0.0.0.0:8081", "client_enabled": False}, []),
        ({"grpc_bind": "127.0.0.1:0", "health_bind": "127.0.0.1:0"}, []),
    ],
)
def test_contradictions(values: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert pairs(**values) == expected


def test_the_settings_refuse_them_naming_both_with_values() -> None:
    with pytest.raises(ValidationError) as caught:
        McSettings(registration_backoff_base=60, registration_backoff_cap=30)
    [error] = caught.value.errors()
    assert error["msg"] == (
        "MC_REGISTRATION_BACKOFF_BASE=60 contradicts MC_REGISTRATION_BACKOFF_CAP=30: "
        "the first retry wait would be longer than the longest"
    )


def test_the_defaults_hold_together() -> None:
    assert contradictions(McSettings()) == []
