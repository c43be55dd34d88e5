"""The GC's access model (`darktower.gc.access`, README "Access model"): the pure decisions as
tables, the shared display-name rule, and the attacks against the real HTTP app on a real
store — each refused with the documented status and reason, and nothing placed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from darktower.auth.access_tokens import AccessGrant, InvalidAccessToken, mint_access_token
from darktower.auth.api_keys import ApiKey, ApiKeyRing, write_api_key_file
from darktower.common.errors import InvalidField
from darktower.common.names import normalize_display_name
from darktower.gc.access import (
    AccessRefused,
    GcAccess,
    NoToken,
    bearer_token,
    decide_join,
    decide_operator,
)
from darktower.gc.errors import InvalidGcRequest
from darktower.gc.join import Joiner
from darktower.gc.store import GcStore
from tests.e2e.gc_app import gc_http_app

KEY = ApiKey("APIgctestkey001", "k" * 43)
OTHER = ApiKey("APIgctestkey002", "o" * 43)


def grant(**kw: Any) -> AccessGrant:
    base: dict[str, Any] = {
        "key_id": KEY.key_id,
        "identity": "ada",
        "name": "Ada",
        "meeting_id": "standup",
        "role": "participant",
        "admin": False,
        "expires_at": 0,
    }
    return AccessGrant(**(base | kw))


# --- the decisions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("presented", "guests", "body", "expected"),
    [
        (grant(), False, {}, Joiner("ada", "Ada", "participant")),
        (grant(role="host"), False, {}, Joiner("ada", "Ada", "host")),
        (grant(), False, {"user_id": "ada", "display_name": "Bob"}, Joiner("ada", "Ada")),
        (grant(name=None), False, {"display_name": "Bob"}, Joiner("ada", "Bob")),
        (grant(name=None), False, {}, Joiner("ada", "ada")),
        (grant(name="  Ada  "), False, {}, Joiner("ada", "Ada")),
        (grant(name="Cafe\u0301"), False, {}, Joiner("ada", "Caf\u00e9")),  # NFC
        (grant(role="host"), True, {}, Joiner("ada", "Ada", "host")),
        (grant(admin=True), False, {}, Joiner("ada", "Ada")),
    ],
)
def test_joins_that_pass(
    presented: AccessGrant, guests: bool, body: dict[str, str], expected: Joiner
) -> None:
    joiner = decide_join(
        presented,
        "standup",
        allow_guests=guests,
        body_user_id=body.get("user_id"),
        body_display_name=body.get("display_name"),
    )
    assert joiner == expected


def test_a_guest_is_a_random_participant_named_by_the_body() -> None:
    joiner = decide_join(
        NoToken(), "standup", allow_guests=True, body_user_id=None, body_display_name="Bo"
    )
    assert joiner.user_id.startswith("u-") and (joiner.display_name, joiner.role) == (
        "Bo",
        "participant",
    )
    named = decide_join(
        NoToken(), "standup", allow_guests=True, body_user_id=None, body_display_name=None
    )
    assert named.display_name == "Guest"


@pytest.mark.parametrize(
    ("presented", "guests", "body", "status", "reason"),
    [
        (NoToken(), False, {}, 401, "token_missing"),
        (InvalidAccessToken("token_invalid", "x"), False, {}, 401, "token_invalid"),
        (InvalidAccessToken("token_expired", "x"), True, {}, 401, "token_expired"),
        (InvalidAccessToken("unknown_key", "x"), True, {}, 401, "unknown_key"),
        (InvalidAccessToken("lifetime_too_long", "x"), False, {}, 401, "lifetime_too_long"),
        (grant(meeting_id="other"), False, {}, 403, "wrong_meeting"),
        (grant(meeting_id="other"), True, {}, 403, "wrong_meeting"),
        (grant(admin=True, meeting_id=None), False, {}, 403, "wrong_meeting"),
        (grant(), False, {"user_id": "alice"}, 403, "identity_mismatch"),
        (grant(), True, {"user_id": "alice"}, 403, "identity_mismatch"),
    ],
)
def test_joins_that_are_refused(
    presented: Any, guests: bool, body: dict[str, str], status: int, reason: str
) -> None:
    with pytest.raises(AccessRefused) as caught:
        decide_join(
            presented,
            "standup",
            allow_guests=guests,
            body_user_id=body.get("user_id"),
            body_display_name=body.get("display_name"),
        )
    assert (caught.value.status, caught.value.reason) == (status, reason)


@pytest.mark.parametrize(
    ("presented", "body_name", "field"),
    [
        (grant(name="\u0410dmin\u200b"), None, "name"),  # Cyrillic A + zero-width space
        (grant(name="evil\u202egnp.exe"), None, "name"),
        (grant(name=None), "a\u2066b", "display_name"),
        (NoToken(), "\u0410dmin\u200b", "display_name"),
    ],
)
def test_bad_names_are_400_naming_the_field(
    presented: Any, body_name: str | None, field: str
) -> None:
    with pytest.raises(InvalidGcRequest) as caught:
        decide_join(
            presented,
            "standup",
            allow_guests=True,
            body_user_id=None,
            body_display_name=body_name,
        )
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("presented", "guests", "outcome"),
    [
        (grant(admin=True, meeting_id=None), False, None),
        (grant(admin=True), False, None),
        (NoToken(), True, None),
        (grant(), True, None),
        (NoToken(), False, (401, "token_missing")),
        (grant(), False, (403, "admin_required")),
        (InvalidAccessToken("token_expired", "x"), False, (401, "token_expired")),
        (InvalidAccessToken("token_invalid", "x"), True, (401, "token_invalid")),
    ],
)
def test_operator_reads(presented: Any, guests: bool, outcome: tuple[int, str] | None) -> None:
    if outcome is None:
        decide_operator(presented, allow_guests=guests)
        return
    with pytest.raises(AccessRefused) as caught:
        decide_operator(presented, allow_guests=guests)
    assert (caught.value.status, caught.value.reason) == outcome


@pytest.mark.parametrize(
    ("header", "token"),
    [(None, None), ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("BEARER abc", "abc")],
)
def test_bearer_headers(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize("header", ["Basic YWRhOng=", "Bearer", "Bearer   ", "abc", ""])
def test_other_authorization_headers_are_refused(header: str) -> None:
    with pytest.raises(AccessRefused) as caught:
        bearer_token(header)
    assert (caught.value.status, caught.value.reason) == (401, "token_invalid")


# --- the display name rule (darktower.common.names) ------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("Ada", "Ada"),
        ("  Ada Lovelace ", "Ada Lovelace"),
        ("Cafe\u0301", "Caf\u00e9"),
        ("名前 🎉", "名前 🎉"),
        ("\u0410dmin", "\u0410dmin"),  # a look-alike letter alone passes: names are not ids
        ("y" * 100, "y" * 100),
    ],
)
def test_display_names_that_pass(raw: str, shown: str) -> None:
    assert normalize_display_name(raw) == shown


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("y" * 101, "at most 100"),
        ("\u0410dmin\u200b", "invisible"),  # zero-width space (Cf)
        ("a\u200db", "invisible"),  # zero-width joiner
        ("a\ufeffb", "invisible"),  # BOM / zero-width no-break space
        ("a\u00adb", "invisible"),  # soft hyphen
        ("evil\u202egnp.exe", "invisible"),  # right-to-left override
        ("a\u2067b", "invisible"),  # right-to-left isolate
        ("a\x00b", "invisible"),
        ("a\x1b[31mred", "invisible"),
        ("a\u2028b", "invisible"),
        ("a\ue000b", "invisible"),  # private use
    ],
)
def test_display_names_that_are_refused(raw: str, reason: str) -> None:
    with pytest.raises(InvalidField, match=reason):
        normalize_display_name(raw)


# --- attacks on the real app (real store; no MC: a refused join must not need one) -----------


@dataclass
class Gc:
    http: httpx.AsyncClient
    store: GcStore
    key_file: Path
    access: GcAccess


@pytest.fixture
async def gc(tmp_path: Path) -> AsyncIterator[Gc]:
    key_file = tmp_path / "api-key.json"
    write_api_key_file(key_file, KEY)
    access = GcAccess(ApiKeyRing([key_file]), allow_guests=False)
    async with gc_http_app(tmp_path, access=access) as app:
        transport = httpx.ASGITransport(app=app.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gc.test") as client:
            yield Gc(client, app.store, key_file, access)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token(key: ApiKey = KEY, **kw: Any) -> str:
    args: dict[str, Any] = {"identity": "ada", "meeting_id": "standup", "name": "Ada"} | kw
    return mint_access_token(key, **args)


def raw_token(**claims: Any) -> str:
    return jwt.encode(claims, KEY.secret, algorithm="HS256")


def _none_token() -> str:
    import base64
    import json

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    payload = {"iss": KEY.key_id, "sub": "ada", "iat": 1, "exp": 2**40, "meeting": "standup"}
    return part({"alg": "none"}) + "." + part(payload) + "."


def _attacks() -> list[tuple[str, dict[str, str], dict[str, Any] | None, int, str]]:
    import time

    now = int(time.time())
    return [
        ("no token", {}, None, 401, "token_missing"),
        ("garbage", bearer("garbage"), None, 401, "token_invalid"),
        ("basic auth", {"Authorization": "Basic YWRhOng="}, None, 401, "token_invalid"),
        ("alg none", bearer(_none_token()), None, 401, "token_invalid"),
        ("wrong secret", bearer(token(ApiKey(KEY.key_id, "w" * 43))), None, 401, "token_invalid"),
        ("unknown iss", bearer(token(OTHER)), None, 401, "unknown_key"),
        (
            "expired",
            bearer(
                raw_token(
                    iss=KEY.key_id, sub="ada", iat=now - 7200, exp=now - 60, meeting="standup"
                )
            ),
            None,
            401,
            "token_expired",
        ),
        (
            "48 h lifetime",
            bearer(
                raw_token(
                    iss=KEY.key_id, sub="ada", iat=now, exp=now + 48 * 3600, meeting="standup"
                )
            ),
            None,
            401,
            "lifetime_too_long",
        ),
        ("other meeting", bearer(token(meeting_id="other")), None, 403, "wrong_meeting"),
        (
            "body user_id is not sub",
            bearer(token()),
            {"user_id": "alice"},
            403,
            "identity_mismatch",
        ),
        (
            "zero-width name",
            bearer(token(name=None)),
            {"display_name": "\u0410dmin\u200b"},
            400,
            "display_name",
        ),
        (
            "rtl override name",
            bearer(token(name=None)),
            {"display_name": "evil\u202egnp.exe"},
            400,
            "display_name",
        ),
        (
            "name claim with zero-width",
            bearer(
                raw_token(
                    iss=KEY.key_id,
                    sub="ada",
                    iat=now,
                    # Valid for hours: these cases are built when the tests are collected, and
                    # a loaded shard reached this one 21 min later (a 600 s token had expired).
                    exp=now + 12 * 3600,
                    meeting="standup",
                    name="\u0410dmin\u200b",
                )
            ),
            None,
            400,
            "name",
        ),
    ]


@pytest.mark.parametrize(
    ("what", "headers", "body", "status", "reason"), _attacks(), ids=lambda v: None
)
async def test_join_attacks_are_refused_and_nothing_is_placed(
    gc: Gc,
    what: str,
    headers: dict[str, str],
    body: dict[str, Any] | None,
    status: int,
    reason: str,
) -> None:
    answer = await gc.http.post("/v1/meetings/standup/join", json=body, headers=headers)
    assert (answer.status_code, answer.json().get("reason")) == (status, reason), (
        what,
        answer.text,
    )
    error = answer.json()
    assert set(error) == {"error", "reason", "message"}
    assert (
        error["error"]
        == {401: "unauthenticated", 403: "forbidden", 400: "invalid_argument"}[status]
    )
    if status == 401:
        assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert KEY.secret not in answer.text
    # State intact: no assignment, no placement event.
    assert await gc.store.active_assignment("standup", "test") is None
    recent = await gc.http.get(
        "/v1/placements/recent", headers=bearer(token(meeting_id=None, admin=True))
    )
    assert recent.status_code == 200 and recent.json() == []


async def test_a_valid_token_gets_past_access_to_placement(gc: Gc) -> None:
    """With nothing registered the join reaches placement and is its documented 503: the
    token was accepted (and the event log shows the attempt)."""
    answer = await gc.http.post("/v1/meetings/standup/join", headers=bearer(token()))
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "unavailable"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/controllers",
        "/v1/media-handlers",
        "/v1/meetings",
        "/v1/meetings/standup",
        "/v1/placements/recent",
    ],
)
async def test_operator_reads_need_the_admin_grant(gc: Gc, path: str) -> None:
    missing = await gc.http.get(path)
    assert (missing.status_code, missing.json()["reason"]) == (401, "token_missing")
    participant = await gc.http.get(path, headers=bearer(token()))
    assert (participant.status_code, participant.json()["reason"]) == (403, "admin_required")
    forged = await gc.http.get(path, headers=bearer(token(OTHER, admin=True)))
    assert (forged.status_code, forged.json()["reason"]) == (401, "unknown_key")
    admin = await gc.http.get(path, headers=bearer(token(meeting_id=None, admin=True)))
    assert admin.status_code == (404 if path == "/v1/meetings/standup" else 200), admin.text


@pytest.mark.parametrize("path", ["/health/live", "/metrics", "/openapi.json", "/", "/join"])
async def test_health_metrics_docs_and_pages_stay_open(gc: Gc, path: str) -> None:
    assert (await gc.http.get(path)).status_code == 200


async def test_a_reloaded_key_file_takes_effect_at_once(gc: Gc, tmp_path: Path) -> None:
    """What SIGHUP does (`ApiKeyRing.reload`, run by the GC's reload hooks): a new key is
    trusted and the old one no longer, for the next request."""
    write_api_key_file(gc.key_file, OTHER, force=True)
    assert gc.access.keys.reload()
    old = await gc.http.post("/v1/meetings/standup/join", headers=bearer(token()))
    assert (old.status_code, old.json()["reason"]) == (401, "unknown_key")
    new = await gc.http.post("/v1/meetings/standup/join", headers=bearer(token(OTHER)))
    assert new.status_code == 503  # past access, nothing registered
