"""The join answer carries a join token and the MC's signaling URL.

Against a real in-process fleet (GC, an MC registered through gRPC with its client endpoint,
a simulated MH): the token verifies with the GC's public key for that meeting and user; a
reused assignment answers a token of its own; an MC without a client endpoint answers no
signaling URL. The body's validation, the URL derivation and the OpenAPI document are checked
on the GC's app with a real store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import redis.asyncio as aioredis

from darktower.auth.api_keys import ApiKeyRing
from darktower.auth.client import ServiceTokenProvider
from darktower.auth.join_tokens import (
    JOIN_AUDIENCE,
    InvalidJoinToken,
    JoinTokenVerifier,
    WrongMeeting,
)
from darktower.auth.keys import generate_key_files, load_private_key, load_public_keys
from darktower.auth.tokens import SERVICE_PROFILES
from darktower.gc.access import GcAccess
from darktower.gc.errors import InvalidGcRequest
from darktower.gc.http import create_app
from darktower.gc.join import (
    JoinTokenIssuer,
    PlacementService,
    signaling_url,
    validate_joiner,
)
from darktower.gc.mc_client import McClient
from darktower.gc.store import GcStore
from tests.client import InProcessFleet, in_process_fleet

pytestmark = pytest.mark.timeout(60)

JOIN_ANSWER_FIELDS = {
    "meeting_id",
    "region",
    "mc_id",
    "mc_grpc_endpoint",
    "mc_client_endpoint",
    "media_handlers",
    "reused",
    "user_id",
    "display_name",
    "join_token",
    "signaling_url",
    "ice_servers",
}


# --- pure rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://127.0.0.1:8090", "ws://127.0.0.1:8090/v1/signaling"),
        ("https://mc-1.example.com:443", "wss://mc-1.example.com:443/v1/signaling"),
        ("HTTPS://mc-1.example.com", "wss://mc-1.example.com/v1/signaling"),
        ("http://mc-1:8090/", "ws://mc-1:8090/v1/signaling"),
        ("https://edge.example/mc-7", "wss://edge.example/mc-7/v1/signaling"),
        ("https://edge.example/mc-7/", "wss://edge.example/mc-7/v1/signaling"),
        ("http://[::1]:8090", "ws://[::1]:8090/v1/signaling"),
        ("http://h:1?x=1#y", "ws://h:1/v1/signaling"),
        (None, None),
        ("", None),
        ("ftp://h:1", None),
        ("mc-1:8090", None),
        ("http://", None),
    ],
)
def test_signaling_url_from_the_client_endpoint(endpoint: str | None, url: str | None) -> None:
    assert signaling_url(endpoint) == url


@pytest.mark.parametrize(
    ("user_id", "name", "expected"),
    [
        ("ada", "Ada Lovelace", ("ada", "Ada Lovelace")),
        ("ada.l@example.org", "  Ada  ", ("ada.l@example.org", "Ada")),
        ("u_1-2", "名前 🎉", ("u_1-2", "名前 🎉")),
        ("x" * 64, "y" * 100, ("x" * 64, "y" * 100)),
        ("ada", None, ("ada", "Guest")),
    ],
)
def test_joiners_that_pass(user_id: str, name: str | None, expected: tuple[str, str]) -> None:
    joiner = validate_joiner(user_id, name)
    assert (joiner.user_id, joiner.display_name) == expected


def test_a_joiner_without_id_gets_a_random_one() -> None:
    first, second = validate_joiner(None, None), validate_joiner(None, "Bo")
    assert first.user_id.startswith("u-") and len(first.user_id) == 18
    assert first.user_id != second.user_id
    assert (first.display_name, second.display_name) == ("Guest", "Bo")


@pytest.mark.parametrize(
    ("user_id", "name", "field"),
    [
        ("", None, "user_id"),
        ("x" * 65, None, "user_id"),
        ("a b", None, "user_id"),
        ("\u00e4d\u0430", None, "user_id"),  # non-ASCII, a Cyrillic look-alike "a"
        ("a/b", None, "user_id"),
        ("a\nb", None, "user_id"),
        ("ok", "", "display_name"),
        ("ok", "   ", "display_name"),
        ("ok", "y" * 101, "display_name"),
        ("ok", "a\x00b", "display_name"),
        ("ok", "a\x1b[31mred", "display_name"),
        ("ok", "a\u2028b", "display_name"),
        ("ok", "evil\u202egnp.exe", "display_name"),
        ("ok", "a\ud800b", "display_name"),
    ],
)
def test_joiners_that_are_refused(user_id: str, name: str | None, field: str) -> None:
    with pytest.raises(InvalidGcRequest) as caught:
        validate_joiner(user_id, name)
    assert caught.value.field == field


# --- the GC's app on a real store ----------------------------------------------------------


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    generate_key_files(tmp_path / "keys")
    return tmp_path / "keys"


@pytest.fixture
async def api(store: GcStore, keys: Path) -> AsyncIterator[httpx.AsyncClient]:
    service_type, scope = SERVICE_PROFILES["gc"]
    key = load_private_key(keys / "gc.key")
    tokens = ServiceTokenProvider(key, service_type=service_type, scope=scope, issuer="gc-1")
    mc_client = McClient(tokens, gc_id="gc-1")
    placement = PlacementService(
        store,
        mc_client,
        join_tokens=JoinTokenIssuer(key, issuer="gc-1"),
        gc_id="gc-1",
        region="test",
        staleness_s=30,
    )

    async def ready() -> tuple[bool, str]:
        return True, ""

    app = create_app(
        store,
        placement,
        region="test",
        is_ready=ready,
        access=GcAccess(ApiKeyRing(), allow_guests=True),
    )
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gc.test") as client:
            yield client
    finally:
        await mc_client.aclose()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": ""}, "user_id"),
        ({"user_id": "a b"}, "user_id"),
        ({"user_id": "x" * 65}, "user_id"),
        ({"user_id": 5}, "user_id"),
        ({"display_name": ""}, "display_name"),
        ({"display_name": "   "}, "display_name"),
        ({"display_name": "n" * 101}, "display_name"),
        ({"display_name": "a\u0007b"}, "display_name"),
        ({"display_name": "a\u202eb"}, "display_name"),
        ({"display_name": ["Ada"]}, "display_name"),
        ([], "body"),
        ("Ada", "body"),
    ],
)
async def test_a_bad_body_is_400_naming_the_field(
    api: httpx.AsyncClient, body: Any, field: str
) -> None:
    response = await api.post("/v1/meetings/standup/join", json=body)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["error"] == "invalid_argument" and answer["reason"] == field
    assert answer["message"].startswith(field)


async def test_malformed_json_is_400_and_the_meeting_id_is_checked_first(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post(
        "/v1/meetings/standup/join",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400 and response.json()["reason"] == "body"
    both_bad = await api.post("/v1/meetings/a@b/join", json={"display_name": "\x00"})
    assert both_bad.status_code == 400 and both_bad.json()["reason"] == "meeting_id"


async def test_openapi_describes_the_join_body_and_answer(api: httpx.AsyncClient) -> None:
    document = (await api.get("/openapi.json")).json()
    join = document["paths"]["/v1/meetings/{meeting_id}/join"]["post"]
    body = join["requestBody"]
    assert body.get("required", False) is False
    schemas = document["components"]["schemas"]
    body_schema = schemas["JoinIn"]["properties"]
    assert {"user_id", "display_name", "unreachable_mc_id"} == set(body_schema)
    assert "pattern" in str(body_schema["user_id"])
    assert "pattern" in str(body_schema["unreachable_mc_id"])
    answer_ref = join["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    answer = schemas[answer_ref.rsplit("/", 1)[1]]
    assert set(answer["properties"]) == JOIN_ANSWER_FIELDS
    assert {"400", "503"} <= set(join["responses"])
    listing = document["paths"]["/v1/meetings"]["get"]
    assert [p["name"] for p in listing["parameters"]] == ["limit", "offset", "Authorization"]


# --- a real fleet --------------------------------------------------------------------------


@pytest.fixture
async def fleet(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> AsyncIterator[InProcessFleet]:
    async with in_process_fleet(tmp_path, redis_url) as started:
        yield started


def _verifier(fleet: InProcessFleet) -> JoinTokenVerifier:
    return JoinTokenVerifier(load_public_keys([fleet.key_dir / "gc" / "gc-test.pub"]))


async def test_the_join_answer_carries_a_token_for_that_meeting_and_user(
    fleet: InProcessFleet,
) -> None:
    mc = fleet.mcs[0]
    async with httpx.AsyncClient(base_url=fleet.gc_url, trust_env=False) as http:
        response = await http.post(
            "/v1/meetings/standup/join", json={"user_id": "ada", "display_name": "Ada"}
        )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == JOIN_ANSWER_FIELDS
    assert answer["mc_id"] == "mc-1" and answer["reused"] is False
    assert answer["mc_client_endpoint"] == f"http://127.0.0.1:{mc.client_port}"
    assert answer["signaling_url"] == f"ws://127.0.0.1:{mc.client_port}/v1/signaling"
    assert (answer["user_id"], answer["display_name"]) == ("ada", "Ada")
    assert len(answer["media_handlers"]) == 1

    claims = _verifier(fleet).verify(answer["join_token"], meeting_id="standup")
    assert (claims.meeting_id, claims.user_id, claims.display_name) == ("standup", "ada", "Ada")
    assert claims.issuer == "gc-test"
    with pytest.raises(WrongMeeting):
        _verifier(fleet).verify(answer["join_token"], meeting_id="other")
    # Signed by the GC's key: another key pair does not verify it.
    generate_key_files(fleet.key_dir / "other")
    stranger = JoinTokenVerifier(load_public_keys([fleet.key_dir / "other" / "gc.pub"]))
    with pytest.raises(InvalidJoinToken):
        stranger.verify(answer["join_token"])


async def test_a_reused_assignment_answers_a_fresh_token_per_joiner(
    fleet: InProcessFleet,
) -> None:
    verifier = _verifier(fleet)
    async with httpx.AsyncClient(base_url=fleet.gc_url, trust_env=False) as http:
        first = (await http.post("/v1/meetings/standup/join")).json()
        second = (await http.post("/v1/meetings/standup/join", json={"display_name": "Bo"})).json()
        again = (await http.post("/v1/meetings/standup/join", json={"user_id": "ada"})).json()
    assert (first["reused"], second["reused"], again["reused"]) == (False, True, True)
    assert first["mc_id"] == second["mc_id"] == again["mc_id"]
    assert first["display_name"] == "Guest" and first["user_id"].startswith("u-")
    tokens = {a["join_token"] for a in (first, second, again)}
    assert len(tokens) == 3
    users = [verifier.verify(a["join_token"], meeting_id="standup") for a in (first, second, again)]
    assert [(c.user_id, c.display_name) for c in users] == [
        (first["user_id"], "Guest"),
        (second["user_id"], "Bo"),
        ("ada", "Guest"),
    ]
    assert first["user_id"] != second["user_id"]
    # The default lifetime (GC_JOIN_TOKEN_TTL_SECONDS) is 120 s.
    payload = jwt.decode(again["join_token"], options={"verify_signature": False})
    assert payload["exp"] - payload["iat"] == 120 and payload["aud"] == JOIN_AUDIENCE


async def test_an_mc_without_a_client_endpoint_answers_no_signaling_url(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> None:
    overrides = {"client_enabled": False, "client_advertise": ""}
    async with (
        in_process_fleet(tmp_path, redis_url, mc_overrides=overrides) as fleet,
        httpx.AsyncClient(base_url=fleet.gc_url, trust_env=False) as http,
    ):
        answer = (await http.post("/v1/meetings/quiet/join")).json()
    assert answer["mc_client_endpoint"] is None and answer["signaling_url"] is None
    assert _verifier(fleet).verify(answer["join_token"], meeting_id="quiet").meeting_id == "quiet"
