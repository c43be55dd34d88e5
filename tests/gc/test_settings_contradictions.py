"""GC settings that contradict each other: the pure rule as a table, and the settings class
refusing them with a message that names both variables."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from darktower.gc.settings import GcSettings, contradictions


def pairs(**values: Any) -> list[tuple[str, str]]:
    """(first, second) variable names of each contradiction in defaults + `values`."""
    found = contradictions(GcSettings.model_construct(**values))
    return [(c.first.split("=")[0], c.second.split("=")[0]) for c in found]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, []),
        # The case: 3 s staleness, MH load reports every 10 s (the default).
        (
            {"staleness_seconds": 3, "sweep_interval_seconds": 1, "fast_heartbeat_ms": 1000},
            [("GC_STALENESS_SECONDS", "GC_MH_LOAD_REPORT_MS")],
        ),
        # MCs: the fast and the comprehensive beat both refresh the heartbeat, so the shorter
        # one counts — a long comprehensive interval alone is fine.
        ({"comprehensive_heartbeat_ms": 120_000}, []),
        ({"fast_heartbeat_ms": 60_000, "comprehensive_heartbeat_ms": 20_000}, []),
        (
            {"fast_heartbeat_ms": 30_000, "comprehensive_heartbeat_ms": 30_000},
            [("GC_STALENESS_SECONDS", "GC_FAST_HEARTBEAT_MS")],
        ),
        (
            {"fast_heartbeat_ms": 40_000, "comprehensive_heartbeat_ms": 35_000},
            [("GC_STALENESS_SECONDS", "GC_COMPREHENSIVE_HEARTBEAT_MS")],
        ),
        ({"fast_heartbeat_ms": 29_999, "mh_load_report_ms": 29_999}, []),
        ({"mh_load_report_ms": 30_000}, [("GC_STALENESS_SECONDS", "GC_MH_LOAD_REPORT_MS")]),
        # The sweep must run more often than the threshold.
        ({"sweep_interval_seconds": 30}, [("GC_SWEEP_INTERVAL_SECONDS", "GC_STALENESS_SECONDS")]),
        ({"sweep_interval_seconds": 29.5}, []),
        # A live placement must not be taken over while it waits for one MC call.
        (
            {"claim_stale_seconds": 10},
            [("GC_CLAIM_STALE_SECONDS", "GC_MC_CALL_TIMEOUT_SECONDS")],
        ),
        ({"claim_stale_seconds": 10, "mc_call_timeout_seconds": 5}, []),
        # Two listeners on one port; different hosts (no wildcard) or port 0 are fine.
        (
            {"grpc_bind": "127.0.0.1:9000", "http_bind": "0.0.0.0:9000"},
            [("GC_GRPC_BIND", "GC_HTTP_BIND")],
        ),
        ({"grpc_bind": "127.0.0.1:9000", "http_bind": "127.0.0.2:9000"}, []),
        ({"grpc_bind": "127.0.0.1:0", "http_bind": "127.0.0.1:0"}, []),
    ],
)
def test_contradictions(values: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert pairs(**values) == expected


def test_the_settings_refuse_them_naming_both_with_values() -> None:
    with pytest.raises(ValidationError) as caught:
        GcSettings(staleness_seconds=3, sweep_interval_seconds=1, fast_heartbeat_ms=1000)
    [error] = caught.value.errors()
    assert error["loc"] == ()
    assert error["msg"].startswith(
        "GC_STALENESS_SECONDS=3 contradicts GC_MH_LOAD_REPORT_MS=10000: every MH would be stale"
    )


def test_the_defaults_hold_together() -> None:
    assert contradictions(GcSettings()) == []
