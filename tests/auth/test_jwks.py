"""JWKS: the encoding round trip, strict decoding, and `JwksTrustSource` against a real HTTP
server on loopback (unknown kid → one refresh, the rate limit, junk and huge bodies, failures
that keep the keys held)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI, Request, Response

from darktower.auth.errors import AuthenticationFailed
from darktower.auth.jwks import (
    MAX_JWKS_BYTES,
    MAX_JWKS_KEYS,
    JwksError,
    JwksTrustSource,
    jwk_for,
    jwks_document,
    keys_from_jwks,
    safe_url,
)
from darktower.auth.keys import TrustedKey
from darktower.auth.tokens import SCOPE_MC, ServiceType, TokenVerifier, mint_service_token
from darktower.runtime.serving import HttpServer
from darktower.runtime.supervisor import TaskSupervisor

GC = ServiceType.GLOBAL_CONTROLLER


def gc_key(instance: str = "gc-1") -> tuple[Ed25519PrivateKey, TrustedKey]:
    private = Ed25519PrivateKey.generate()
    return private, TrustedKey.bound(private.public_key(), GC, instance)


def body(*keys: TrustedKey) -> bytes:
    return json.dumps(jwks_document(keys)).encode()


# --- encoding and decoding -------------------------------------------------------------------


def test_round_trip_keeps_key_kid_and_binding() -> None:
    _, bound = gc_key("gc-7")
    unbound = TrustedKey.unbound(Ed25519PrivateKey.generate().public_key())
    decoded = keys_from_jwks(body(bound, unbound), service_type=GC)
    assert decoded == [bound, unbound]
    jwk = jwk_for(bound)
    assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519" and jwk["kid"] == bound.kid
    assert (jwk["darktower_service"], jwk["darktower_instance"]) == ("gc", "gc-7")
    assert "darktower_service" not in jwk_for(unbound)
    assert "d" not in jwk  # a public key only


def test_a_jwks_token_verifies_and_its_binding_holds() -> None:
    private, bound = gc_key("gc-1")
    verifier = TokenVerifier(
        keys_from_jwks(body(bound), service_type=GC),
        required_scope=SCOPE_MC,
        allowed_callers={GC},
        allow_unbound_keys=False,
    )
    good = mint_service_token(private, service_type=GC, scope=SCOPE_MC, issuer="gc-1")
    assert verifier.verify(good).subject == "gc-1"
    # The JWKS says this key speaks for gc-1: a token of it claiming gc-2 is refused.
    other = mint_service_token(private, service_type=GC, scope=SCOPE_MC, issuer="gc-2")
    with pytest.raises(AuthenticationFailed) as refused:
        verifier.verify(other)
    assert refused.value.reason == "wrong_subject"


def mutate(key: TrustedKey, **changes: object) -> bytes:
    jwk: dict[str, object] = dict(jwk_for(key))
    for name, value in changes.items():
        if value is None:
            jwk.pop(name, None)
        else:
            jwk[name] = value
    return json.dumps({"keys": [jwk]}).encode()


_, KEY = gc_key()
_, OTHER = gc_key()


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"<html>not json</html>", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b'{"keys": {}}', "not a JWKS"),
        (b"[]", "not a JWKS"),
        (b" " * (MAX_JWKS_BYTES + 1), "larger than"),
        (json.dumps({"keys": [{}] * (MAX_JWKS_KEYS + 1)}).encode(), "more than"),
        (b'{"keys": ["x"]}', "not an object"),
        (mutate(KEY, kid=OTHER.kid), "kid is not the key's fingerprint"),
        (mutate(KEY, x="AAAA"), "not a 32-byte"),
        (mutate(KEY, x="!!!"), "not base64url"),
        (mutate(KEY, kid=None), "lacks x or kid"),
        (mutate(KEY, d="secret"), "not a public signing key"),
        (mutate(KEY, alg="RS256"), "not a public signing key"),
        # A key the GC publishes as an MC's (or an MH's) is no GC key.
        (mutate(KEY, darktower_service="mc"), "bound to service 'mc'"),
        (mutate(KEY, darktower_service="nobody"), "bound to service 'nobody'"),
        (mutate(KEY, darktower_instance=None), "must come together"),
        (mutate(KEY, darktower_instance="no spaces"), "bad darktower_instance"),
    ],
)
def test_a_bad_jwks_is_refused_whole(data: bytes, problem: str) -> None:
    with pytest.raises(JwksError, match=problem):
        keys_from_jwks(data, service_type=GC)


def test_keys_of_other_types_are_skipped() -> None:
    rsa = {"kty": "RSA", "kid": "r1", "n": "xyz", "e": "AQAB"}
    data = json.dumps({"keys": [rsa, jwk_for(KEY)]}).encode()
    assert keys_from_jwks(data, service_type=GC) == [KEY]


def test_one_key_with_two_bindings_is_refused() -> None:
    first = jwk_for(KEY)
    second = {**first, "darktower_instance": "gc-2"}
    with pytest.raises(JwksError, match="listed twice"):
        keys_from_jwks(json.dumps({"keys": [first, second]}).encode(), service_type=GC)


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        (
            "https://user:pw@gc.example:8443/.well-known/jwks.json?t=secret#x",
            "https://gc.example:8443/.well-known/jwks.json",
        ),
        ("http://[::1]:80/jwks", "http://[::1]:80/jwks"),
        ("http://127.0.0.1/jwks", "http://127.0.0.1/jwks"),
    ],
)
def test_urls_are_logged_without_credentials_or_query(url: str, safe: str) -> None:
    assert safe_url(url) == safe


# --- JwksTrustSource against a real HTTP server ----------------------------------------------


@dataclass
class JwksServer:
    """A loopback HTTP server whose answer the test sets: `status` and `payload`."""

    url: str = ""
    status: int = 200
    payload: bytes = b'{"keys": []}'
    streamed_bytes: int = 0  # when set: a chunked body of this many bytes, no content-length
    requests: int = 0
    paths: list[str] = field(default_factory=list)


@pytest.fixture
async def jwks_server() -> AsyncIterator[JwksServer]:
    state = JwksServer()
    app = FastAPI()

    @app.get("/.well-known/jwks.json")
    async def jwks(request: Request) -> Response:
        state.requests += 1
        state.paths.append(request.url.path)
        if state.streamed_bytes:
            from fastapi.responses import StreamingResponse

            async def chunks() -> AsyncIterator[bytes]:
                sent = 0
                while sent < state.streamed_bytes:
                    yield b" " * 8192
                    sent += 8192

            return StreamingResponse(chunks(), media_type="application/json")
        return Response(state.payload, status_code=state.status, media_type="application/json")

    tasks = TaskSupervisor(["jwks-test-http"])
    server = HttpServer(
        app, "127.0.0.1:0", what="test JWKS", tasks=tasks, task_name="jwks-test-http"
    )
    await server.start()
    state.url = f"{server.url}/.well-known/jwks.json"
    try:
        yield state
    finally:
        await server.stop()
        await tasks.stop(2.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def source(server: JwksServer, clock: Clock, **options: float) -> JwksTrustSource:
    return JwksTrustSource(
        server.url,
        service_type=GC,
        min_refresh_seconds=options.get("min_refresh_seconds", 10.0),
        refresh_seconds=options.get("refresh_seconds", 300.0),
        timeout_seconds=5.0,
        clock=clock,
    )


async def test_fetch_then_an_unknown_kid_triggers_exactly_one_refresh(
    jwks_server: JwksServer,
) -> None:
    jwks_server.payload = body(KEY)
    clock = Clock()
    jwks = source(jwks_server, clock)
    changes: list[list[TrustedKey]] = []
    jwks.on_change = changes.append
    assert await jwks.refresh() is True
    assert jwks.keys == [KEY] and changes == [[KEY]]
    assert jwks_server.requests == 1

    # A known kid costs nothing.
    assert await jwks.resolve_unknown_kid(KEY.kid) is True
    assert jwks_server.requests == 1

    # The server now publishes a second key; a token naming it makes one fetch.
    jwks_server.payload = body(OTHER, KEY)
    clock.now += 11
    assert await jwks.resolve_unknown_kid(OTHER.kid) is True
    assert jwks_server.requests == 2
    assert jwks.kids == {KEY.kid, OTHER.kid}


async def test_a_flood_of_forged_kids_fetches_at_most_once_per_interval(
    jwks_server: JwksServer,
) -> None:
    jwks_server.payload = body(KEY)
    clock = Clock()
    jwks = source(jwks_server, clock, min_refresh_seconds=10.0)
    await jwks.refresh()
    clock.now += 60
    # 200 concurrent calls with made-up kids: they share one fetch.
    results = await asyncio.gather(*(jwks.resolve_unknown_kid(f"forged{i}") for i in range(200)))
    assert not any(results)
    assert jwks_server.requests == 2
    # And for the next 10 s, none at all.
    for i in range(50):
        clock.now += 0.1
        assert await jwks.resolve_unknown_kid(f"again{i}") is False
    assert jwks_server.requests == 2
    clock.now += 10
    assert await jwks.resolve_unknown_kid("later") is False
    assert jwks_server.requests == 3


@pytest.mark.parametrize(
    ("status", "payload", "streamed", "logged"),
    [
        (200, b"<html>maintenance</html>", 0, "not JSON"),
        (500, b"oops", 0, "HTTP 500"),
        (404, b"{}", 0, "HTTP 404"),
        (200, b'{"keys": [' + b" " * MAX_JWKS_BYTES + b"]}", 0, "larger than"),
        (200, b"", 10 * MAX_JWKS_BYTES, "larger than"),  # chunked: no length to check first
        (200, b'{"keys": []}', 0, None),  # empty: no error, and no key dropped for it either
    ],
)
async def test_a_bad_answer_keeps_the_keys_held(
    jwks_server: JwksServer,
    caplog: pytest.LogCaptureFixture,
    status: int,
    payload: bytes,
    streamed: int,
    logged: str | None,
) -> None:
    jwks_server.payload = body(KEY)
    clock = Clock()
    jwks = source(jwks_server, clock)
    await jwks.refresh()
    jwks_server.status, jwks_server.payload, jwks_server.streamed_bytes = status, payload, streamed
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="darktower.auth.jwks"):
        await jwks.refresh()
    if logged is None:
        # An empty set is a valid answer: the keys go (a GC that unpublished them all).
        assert jwks.keys == []
        return
    assert jwks.keys == [KEY]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert logged in message and "keeping 1 keys" in message
    assert "maintenance" not in message and "oops" not in message


async def test_an_unreachable_server_is_one_line_without_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from darktower.embedded.redis import free_port

    url = f"http://user:hunter2@127.0.0.1:{free_port()}/.well-known/jwks.json?token=s3cret"
    jwks = JwksTrustSource(url, service_type=GC, timeout_seconds=2.0)
    with caplog.at_level(logging.ERROR, logger="darktower.auth.jwks"):
        assert await jwks.refresh() is False
        assert jwks.fetch_blocking() is False
    assert jwks.keys == [] and jwks.failures == 2
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "cannot fetch (ConnectError)" in text
    assert "hunter2" not in text and "s3cret" not in text and "user" not in text


async def test_fetch_blocking_at_start(jwks_server: JwksServer) -> None:
    jwks_server.payload = body(KEY)
    jwks = source(jwks_server, Clock())
    assert await asyncio.to_thread(jwks.fetch_blocking) is True
    assert jwks.keys == [KEY]


async def test_the_periodic_refresh_follows_the_server(jwks_server: JwksServer) -> None:
    jwks_server.payload = body(KEY)
    jwks = JwksTrustSource(jwks_server.url, service_type=GC, refresh_seconds=0.05)
    tasks = TaskSupervisor(["jwks-refresh"])
    jwks.start(tasks, "jwks-refresh")
    try:
        for _ in range(400):
            if jwks.keys == [KEY]:
                break
            await asyncio.sleep(0.025)
        assert jwks.keys == [KEY]
        jwks_server.payload = body(OTHER)
        for _ in range(400):
            if jwks.keys == [OTHER]:
                break
            await asyncio.sleep(0.025)
        assert jwks.keys == [OTHER]
    finally:
        report = await tasks.stop(2.0)
    assert not tasks.failed, report.summary()


def test_a_url_must_be_http_or_https() -> None:
    for url in ("ftp://gc/jwks", "file:///etc/jwks.json", "gc:8080/jwks", "http:///jwks"):
        with pytest.raises(ValueError, match="http:// or https://"):
            JwksTrustSource(url, service_type=GC)


async def test_a_periodic_fetch_does_not_hold_back_an_unknown_kid(jwks_server: JwksServer) -> None:
    # The rate limit counts fetches caused by unknown kids only: a rotation right after a
    # periodic fetch is still picked up by the first token of the new key.
    jwks_server.payload = body(KEY)
    clock = Clock()
    jwks = source(jwks_server, clock, min_refresh_seconds=10.0)
    await jwks.refresh()  # periodic
    jwks_server.payload = body(OTHER, KEY)
    clock.now += 0.1
    assert await jwks.resolve_unknown_kid(OTHER.kid) is True
    assert jwks_server.requests == 2
