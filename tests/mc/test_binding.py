"""Session binding tokens: the format, per-meeting keys, time boundaries, the nonce ledger."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct

import pytest
import redis.asyncio as aioredis

from darktower.fencing import StoreUnavailable
from darktower.mc import binding
from darktower.mc.binding import (
    BindingRefusal,
    InvalidBinding,
    RedisNonceLedger,
    SessionBinder,
    check_binding_token,
    derive_meeting_key,
    mint_binding_token,
)

SECRET = b"binding-secret-for-tests-0123"
NOW = 1_800_000_000.0
IDS = {"meeting_id": "room-1", "correlation_id": "0190-cid", "participant_id": "p-1"}


def raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def check(token: str, *, now: float = NOW, **ids: str) -> binding.CheckedBinding:
    return check_binding_token(SECRET, token, now=now, **(IDS | ids))


def test_token_layout_is_nonce_time_mac_with_length_prefixed_ids() -> None:
    nonce = bytes(range(16))
    token = mint_binding_token(SECRET, now=NOW, nonce=nonce, **IDS)
    data = raw(token)
    assert len(data) == 56 and len(token) == 75 and "=" not in token
    assert data[:16] == nonce
    assert struct.unpack(">Q", data[16:24]) == (int(NOW),)
    key = hashlib.sha256  # the MAC, recomputed from the documented layout
    message = b"\x00\x08" + b"0190-cid" + b"\x00\x03" + b"p-1" + nonce + struct.pack(">Q", int(NOW))
    expected = hmac.new(derive_meeting_key(SECRET, "room-1"), message, key).digest()
    assert data[24:] == expected
    assert check(token).nonce == nonce


def test_hkdf_key_is_per_meeting_and_per_secret() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    expected = HKDF(hashes.SHA256(), 32, salt=b"room-1", info=b"session-binding").derive(SECRET)
    assert derive_meeting_key(SECRET, "room-1") == expected
    assert derive_meeting_key(SECRET, "room-2") != expected
    assert derive_meeting_key(b"another-secret-0123456789", "room-1") != expected


@pytest.mark.parametrize(
    "field",
    [
        pytest.param({"meeting_id": "room-2"}, id="other meeting"),
        pytest.param({"participant_id": "p-2"}, id="other participant"),
        pytest.param({"correlation_id": "0190-other"}, id="other correlation id"),
        # Length prefixes: shifting a character from one id to the other changes the MAC.
        pytest.param({"correlation_id": "0190-cidp", "participant_id": "-1"}, id="shifted ids"),
    ],
)
def test_a_token_binds_only_its_meeting_correlation_and_participant(field: dict[str, str]) -> None:
    token = mint_binding_token(SECRET, now=NOW, **IDS)
    with pytest.raises(InvalidBinding) as caught:
        check(token, **field)
    assert caught.value.reason is BindingRefusal.FORGED


def test_another_secret_is_forged() -> None:
    token = mint_binding_token(b"some-other-secret-0123456", now=NOW, **IDS)
    with pytest.raises(InvalidBinding) as caught:
        check(token)
    assert caught.value.reason is BindingRefusal.FORGED


@pytest.mark.parametrize("position", [0, 15, 16, 23, 24, 55])
def test_any_flipped_byte_is_refused(position: int) -> None:
    data = bytearray(raw(mint_binding_token(SECRET, now=NOW, **IDS)))
    data[position] ^= 0x01
    with pytest.raises(InvalidBinding) as caught:
        check(b64(bytes(data)))
    # A changed issued_at is a forgery too: the MAC covers it.
    assert caught.value.reason is BindingRefusal.FORGED


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("not base64 at all!", id="not base64"),
        pytest.param(b64(b"\x00" * 55), id="one byte short"),
        pytest.param(b64(b"\x00" * 57), id="one byte long"),
        pytest.param("A" * 500, id="far too long"),
        pytest.param("é" * 75, id="not ascii"),
    ],
)
def test_malformed_tokens(token: str) -> None:
    with pytest.raises(InvalidBinding) as caught:
        check(token)
    assert caught.value.reason is BindingRefusal.MALFORMED


@pytest.mark.parametrize(
    ("age", "valid"),
    [
        (0, True),
        (30, True),  # the TTL
        (35, True),  # TTL + clock skew
        (36, False),  # TTL + skew + 1
        (3600, False),
        (-5, True),  # issued 5 s in the future (the other side's clock is ahead)
        (-6, False),
    ],
)
def test_validity_window_is_ttl_plus_skew(age: int, valid: bool) -> None:
    token = mint_binding_token(SECRET, now=NOW - age, **IDS)
    if valid:
        check(token)
        return
    with pytest.raises(InvalidBinding) as caught:
        check(token)
    assert caught.value.reason is BindingRefusal.EXPIRED


def test_the_mac_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    token = mint_binding_token(SECRET, now=NOW, **IDS)
    check(token)
    with pytest.raises(InvalidBinding):
        check(token, participant_id="p-2")
    assert len(calls) == 2 and all(len(a) == len(b) == 32 for a, b in calls)


def test_secret_is_not_in_the_binder_repr_or_errors() -> None:
    binder = SessionBinder(SECRET, RedisNonceLedger(aioredis.Redis()))
    assert SECRET.decode() not in repr(binder)
    with pytest.raises(InvalidBinding) as caught:
        check("garbage")
    assert SECRET.decode() not in str(caught.value)


async def test_each_nonce_is_good_once(redis_client: aioredis.Redis) -> None:
    binder = SessionBinder(SECRET, RedisNonceLedger(redis_client))
    token = binder.mint("room-1", "0190-cid", "p-1")
    ids = {"meeting_id": "room-1", "correlation_id": "0190-cid", "participant_id": "p-1"}
    await binder.verify(token, **ids)
    with pytest.raises(InvalidBinding) as caught:
        await binder.verify(token, **ids)
    assert caught.value.reason is BindingRefusal.REPLAYED
    # The spent nonce lives in the meeting's hash slot and expires with the token's validity.
    nonce_hex = raw(token)[:16].hex()
    key = f"meeting:{{room-1}}:nonce:{nonce_hex}"
    assert await redis_client.get(key) == b"1"
    assert 30 <= await redis_client.ttl(key) <= 36
    # A second token for the same session is fine: every token has its own nonce.
    await binder.verify(binder.mint("room-1", "0190-cid", "p-1"), **ids)


async def test_forged_and_expired_tokens_never_reach_redis(redis_client: aioredis.Redis) -> None:
    binder = SessionBinder(SECRET, RedisNonceLedger(redis_client))
    ids = {"meeting_id": "room-1", "correlation_id": "0190-cid", "participant_id": "p-1"}
    old = mint_binding_token(SECRET, now=NOW - 100, **IDS)
    for token in (old, "garbage", mint_binding_token(b"x" * 20, **IDS)):
        with pytest.raises(InvalidBinding):
            await binder.verify(token, now=NOW, **ids)
    assert await redis_client.keys("*") == []


async def test_an_unreachable_ledger_is_store_unavailable_without_the_address() -> None:
    from darktower.embedded.redis import free_port

    client = aioredis.Redis(port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5)
    binder = SessionBinder(SECRET, RedisNonceLedger(client))
    token = binder.mint("room-1", "c", "p")
    with pytest.raises(StoreUnavailable) as caught:
        await binder.verify(token, meeting_id="room-1", correlation_id="c", participant_id="p")
    assert "127.0.0.1" not in str(caught.value) and "localhost" not in str(caught.value)
    await client.aclose()
