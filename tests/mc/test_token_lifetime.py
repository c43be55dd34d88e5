"""The longest service token life a verifier accepts is configurable (issue 13): 600 s by
default, `MC_/GC_/MH_SERVICE_TOKEN_MAX_LIFETIME_SECONDS` between 300 s (the life of the tokens
the services mint) and 3600 s. Over real gRPC against in-process MCs on loopback: a token one
second longer than the MC's maximum is UNAUTHENTICATED (`too_long_lived`, counted) and changes
nothing; one at the maximum is admitted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import grpc.aio
import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from darktower.auth.fleet_keys import FleetKeys, generate_fleet_keys
from darktower.auth.keys import load_private_key
from darktower.auth.tokens import SERVICE_PROFILES, mint_service_token
from darktower.gc.settings import GcSettings
from darktower.mc.settings import McSettings
from darktower.mh.settings import MhSettings
from tests.support.mc import RunningMc, assign_request

StartMc = Callable[..., Awaitable[RunningMc]]


def too_long_lived() -> float:
    value = REGISTRY.get_sample_value(
        "service_auth_failures_total", {"service": "mc", "reason": "too_long_lived"}
    )
    return value or 0.0


def gc_token(key: Path, *, audience: str, ttl: int) -> tuple[tuple[str, str], ...]:
    service_type, scope = SERVICE_PROFILES["gc"]
    token = mint_service_token(
        load_private_key(key),
        service_type=service_type,
        scope=scope,
        issuer="gc-1",
        audience=audience,
        ttl_seconds=ttl,
    )
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
def keys(tmp_path: Path) -> FleetKeys:
    return generate_fleet_keys(tmp_path / "keys")


async def assign(
    mc: RunningMc, keys: FleetKeys, meeting_id: str, ttl: int
) -> grpc.StatusCode | bool:
    metadata = gc_token(keys.key("gc", "gc-1"), audience=mc.app.settings.id, ttl=ttl)
    try:
        answer = await mc.stub.AssignMeetingWithMh(assign_request(meeting_id), metadata=metadata)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return answer.accepted


async def test_each_mc_refuses_tokens_longer_than_its_maximum(
    start_mc: StartMc, keys: FleetKeys
) -> None:
    default = await start_mc(id="mc-1", trusted_gc_key_files=[keys.trusted("gc")])
    strict = await start_mc(
        id="mc-2",
        trusted_gc_key_files=[keys.trusted("gc")],
        service_token_max_lifetime_seconds=300,
    )
    assert strict.app.settings.service_token_max_lifetime_seconds == 300

    before = too_long_lived()
    assert await assign(default, keys, "a", 601) == grpc.StatusCode.UNAUTHENTICATED
    assert await assign(strict, keys, "b", 301) == grpc.StatusCode.UNAUTHENTICATED
    assert too_long_lived() == before + 2
    assert default.app.controller.meetings == {}
    assert strict.app.controller.meetings == {}

    # At the maximum each is admitted: the refusal above was the lifetime, nothing else.
    assert await assign(default, keys, "a", 600) is True
    assert await assign(strict, keys, "b", 300) is True
    # What the default MC takes, the strict one refuses.
    assert await assign(strict, keys, "c", 600) == grpc.StatusCode.UNAUTHENTICATED
    assert "c" not in strict.app.controller.meetings


@pytest.mark.parametrize("settings_class", [McSettings, GcSettings, MhSettings])
@pytest.mark.parametrize(
    ("value", "valid"), [(299, False), (300, True), (3600, True), (3601, False)]
)
def test_the_maximum_is_kept_between_300_s_and_an_hour(
    settings_class: type[BaseSettings],
    value: int,
    valid: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = {McSettings: "MC", GcSettings: "GC", MhSettings: "MH"}[settings_class]
    monkeypatch.setenv(f"{prefix}_SERVICE_TOKEN_MAX_LIFETIME_SECONDS", str(value))
    if valid:
        assert settings_class().service_token_max_lifetime_seconds == value  # type: ignore[attr-defined]
    else:
        with pytest.raises(ValidationError, match="service_token_max_lifetime_seconds"):
            settings_class()
    monkeypatch.delenv(f"{prefix}_SERVICE_TOKEN_MAX_LIFETIME_SECONDS")
    assert settings_class().service_token_max_lifetime_seconds == 600  # type: ignore[attr-defined]
