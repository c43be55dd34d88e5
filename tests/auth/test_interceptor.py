"""ServiceAuthInterceptor over a real gRPC connection on loopback.

An MC-shaped server (trusts the GC, MC and MH keys; serves only the GC) with a servicer that
counts its calls; a client on a real grpc.aio channel. Every refusal must come back with the
one fixed message, bump the metric of its reason, and never reach the servicer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import REGISTRY

from darktower.auth.errors import FAILURE_REASONS, AuthenticationFailed, FailureReason
from darktower.auth.interceptor import (
    GRPC_SERVER_OPTIONS,
    MAX_TOKEN_BYTES,
    UNAUTHENTICATED_MESSAGE,
    ServiceAuthInterceptor,
    current_claims,
    extract_bearer_token,
)
from darktower.auth.keys import key_id
from darktower.auth.tokens import (
    SCOPE_GC,
    SCOPE_MC,
    SERVICE_PROFILES,
    ServiceClaims,
    ServiceType,
    TokenVerifier,
    mint_service_token,
)
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc
from tests.support.mc_servicer import UncalledMcRpcs

SERVICE = "mc-auth-test"  # a label of its own, so other tests' traffic cannot move our counters
KEYS = {name: Ed25519PrivateKey.generate() for name in SERVICE_PROFILES}
UNTRUSTED_KEY = Ed25519PrivateKey.generate()

Metadata = tuple[tuple[str, str], ...]


def mint(name: str, *, key: Ed25519PrivateKey | None = None, **overrides: Any) -> str:
    service_type, scope = SERVICE_PROFILES[name]
    args: dict[str, Any] = {"service_type": service_type, "scope": scope, "issuer": f"{name}-1"}
    args.update(overrides)
    return mint_service_token(key or KEYS[name], **args)


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


def failures(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "service_auth_failures_total", {"service": SERVICE, "reason": reason}
    )
    assert value is not None, "the interceptor creates every series up front"
    return value


def successes() -> float:
    value = REGISTRY.get_sample_value("service_auth_success_total", {"service": SERVICE})
    assert value is not None
    return value


@dataclass
class CountingServicer(UncalledMcRpcs):
    """Accepts every meeting and remembers the claims it was called under."""

    seen: list[ServiceClaims | None] = field(default_factory=list)

    async def AssignMeetingWithMh(
        self, request: pb.AssignMeetingWithMhRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AssignMeetingWithMhResponse:
        self.seen.append(current_claims.get())
        return pb.AssignMeetingWithMhResponse(accepted=True)

    async def RegisterController(
        self, request: pb.RegisterMeetingController, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RegistrationResponse:
        self.seen.append(current_claims.get())
        return pb.RegistrationResponse(accepted=False)

    async def SendHeartbeat(
        self, request: pb.Heartbeat, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.HeartbeatResponse:
        self.seen.append(current_claims.get())
        return pb.HeartbeatResponse(acknowledged=False)

    async def Assign(
        self, request: pb.AssignMeeting, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AssignMeetingResponse:
        self.seen.append(current_claims.get())
        return pb.AssignMeetingResponse(accepted=False)


# A service of each streaming kind, on raw bytes, to check that refusals keep the handler kind.
async def _uu(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    return b"uu:" + request


async def _us(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
    yield b"us:" + request


async def _su(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    return b"su:" + b"".join([r async for r in requests])


async def _ss(
    requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[bytes]:
    async for r in requests:
        yield b"ss:" + r


RAW_SERVICE = "darktower.test.Raw"
RAW_HANDLERS = grpc.method_handlers_generic_handler(
    RAW_SERVICE,
    {
        "UU": grpc.unary_unary_rpc_method_handler(_uu),
        "US": grpc.unary_stream_rpc_method_handler(_us),
        "SU": grpc.stream_unary_rpc_method_handler(_su),
        "SS": grpc.stream_stream_rpc_method_handler(_ss),
    },
)


@dataclass
class Harness:
    channel: grpc.aio.Channel
    stub: pb_grpc.MeetingControllerServiceAsyncStub
    servicer: CountingServicer

    async def assign(self, metadata: Metadata | None) -> pb.AssignMeetingWithMhResponse:
        request = pb.AssignMeetingWithMhRequest(meeting_id="m-1", requesting_gc_id="gc-1")
        return await self.stub.AssignMeetingWithMh(request, metadata=metadata, timeout=5)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    verifier = TokenVerifier(
        [k.public_key() for k in KEYS.values()],
        required_scope=SCOPE_MC,
        allowed_callers={ServiceType.GLOBAL_CONTROLLER},
        allow_unbound_keys=True,
    )
    server = grpc.aio.server(
        interceptors=[ServiceAuthInterceptor(verifier, service=SERVICE)],
        options=GRPC_SERVER_OPTIONS,
    )
    servicer = CountingServicer()
    pb_grpc.add_MeetingControllerServiceServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers((RAW_HANDLERS,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.MeetingControllerServiceStub(channel)
            yield Harness(channel, stub, servicer)
    finally:
        await server.stop(None)


async def test_valid_gc_token_reaches_the_servicer_with_its_claims(harness: Harness) -> None:
    before = successes()

    response = await harness.assign(bearer(mint("gc")))

    assert response.accepted
    assert successes() == before + 1
    (claims,) = harness.servicer.seen
    assert claims is not None
    assert (claims.issuer, claims.service_type) == ("gc-1", ServiceType.GLOBAL_CONTROLLER)


def _expired() -> str:
    return mint("gc", now=time.time() - 1000)


def _unsigned_kid_of_gc() -> str:
    claims = {"iss": "x", "iat": int(time.time()), "exp": int(time.time()) + 60}
    kid = key_id(KEYS["gc"].public_key())
    return jwt.encode(
        {**claims, "service_type": "global-controller", "scope": SCOPE_MC},
        UNTRUSTED_KEY,
        algorithm="EdDSA",
        headers={"kid": kid},
    )


REFUSALS: list[tuple[str, Callable[[], Metadata | None], FailureReason]] = [
    ("no-header", lambda: None, "missing"),
    ("lowercase-bearer", lambda: (("authorization", f"bearer {mint('gc')}"),), "bad_prefix"),
    ("basic", lambda: (("authorization", f"Basic {mint('gc')}"),), "bad_prefix"),
    ("bearer-no-space", lambda: (("authorization", "Bearer"),), "bad_prefix"),
    ("empty", lambda: (("authorization", "Bearer "),), "empty"),
    ("8193-bytes", lambda: bearer("a" * (MAX_TOKEN_BYTES + 1)), "too_large"),
    ("8192-bytes-passes-size-check", lambda: bearer("a" * MAX_TOKEN_BYTES), "malformed"),
    ("two-headers", lambda: bearer(mint("gc")) + bearer(mint("gc")), "malformed"),
    ("unknown-key", lambda: bearer(mint("gc", key=UNTRUSTED_KEY)), "unknown_key"),
    ("forged-signature", lambda: bearer(_unsigned_kid_of_gc()), "bad_signature"),
    ("expired", lambda: bearer(_expired()), "expired"),
    ("wrong-scope", lambda: bearer(mint("gc", scope=SCOPE_GC)), "wrong_scope"),
]


@pytest.mark.parametrize(
    ("make_metadata", "reason"), [pytest.param(m, r, id=i) for i, m, r in REFUSALS]
)
async def test_bad_credentials_are_unauthenticated_with_one_message(
    harness: Harness, make_metadata: Callable[[], Metadata | None], reason: FailureReason
) -> None:
    before, admitted = failures(reason), successes()

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.assign(make_metadata())

    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert info.value.details() == UNAUTHENTICATED_MESSAGE
    assert failures(reason) == before + 1
    assert successes() == admitted
    assert harness.servicer.seen == [], "the servicer must not run on a refused call"


@pytest.mark.parametrize("caller", ["mc", "mh"])
async def test_valid_token_of_a_caller_this_server_does_not_serve_is_permission_denied(
    harness: Harness, caller: str
) -> None:
    before = failures("wrong_caller")
    token = mint(caller, scope=SCOPE_MC)  # right scope, right key: only the caller type is wrong

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.assign(bearer(token))

    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    details = info.value.details() or ""
    assert SERVICE_PROFILES[caller][0].value in details
    assert token not in details
    assert failures("wrong_caller") == before + 1
    assert harness.servicer.seen == []


async def test_every_rpc_of_the_server_is_guarded(harness: Harness) -> None:
    legacy = harness.stub.RegisterController(pb.RegisterMeetingController(), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await legacy
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # An unknown method without a token is refused the same way: nothing to probe.
    unknown = harness.channel.unary_unary(
        "/dark_tower.internal.MeetingControllerService/Nope", None, None
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await unknown(b"", timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert info.value.details() == UNAUTHENTICATED_MESSAGE

    await harness.stub.SendHeartbeat(pb.Heartbeat(), metadata=bearer(mint("gc")), timeout=5)
    assert len(harness.servicer.seen) == 1


async def _call_raw(channel: grpc.aio.Channel, kind: str, metadata: Metadata | None) -> bytes:
    path = f"/{RAW_SERVICE}/{kind}"
    if kind == "UU":
        return bytes(
            await channel.unary_unary(path, None, None)(b"x", metadata=metadata, timeout=5)
        )
    if kind == "US":
        return b"".join(
            [
                bytes(r)
                async for r in channel.unary_stream(path, None, None)(
                    b"x", metadata=metadata, timeout=5
                )
            ]
        )

    async def requests() -> AsyncIterator[bytes]:
        yield b"x"

    if kind == "SU":
        return bytes(
            await channel.stream_unary(path, None, None)(requests(), metadata=metadata, timeout=5)
        )
    call = channel.stream_stream(path, None, None)(requests(), metadata=metadata, timeout=5)
    return b"".join([bytes(r) async for r in call])


@pytest.mark.parametrize("kind", ["UU", "US", "SU", "SS"])
async def test_refusal_works_for_every_streaming_kind(harness: Harness, kind: str) -> None:
    assert (
        await _call_raw(harness.channel, kind, bearer(mint("gc"))) == kind.lower().encode() + b":x"
    )

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _call_raw(harness.channel, kind, bearer(mint("gc", scope=SCOPE_GC)))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert info.value.details() == UNAUTHENTICATED_MESSAGE


async def _details_of(call: Awaitable[object]) -> str:
    """The status details of a call, "" if it succeeded."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.details() or ""
    return ""


async def test_no_token_reaches_a_log_record(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = [mint("gc"), mint("mc", scope=SCOPE_MC), _expired(), mint("gc", scope=SCOPE_GC)]
    tokens.append(mint("gc", key=UNTRUSTED_KEY))
    caplog.set_level(logging.DEBUG)

    for token in tokens:
        for metadata in (bearer(token), (("authorization", f"bearer {token}"),)):
            details = await _details_of(harness.assign(metadata))
            assert token not in details

    assert caplog.records, "the refusals and the admission are logged"
    for record in caplog.records:
        text = f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
        for token in tokens:
            # The signature part alone is enough to replay nothing, but must not leak either.
            assert token not in text
            assert token.rsplit(".", 1)[1] not in text
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "reason=expired" in messages
    assert "reason=wrong_caller" in messages


@pytest.mark.parametrize(
    ("values", "outcome"),
    [
        ([], "missing"),
        (["Bearer abc"], "abc"),
        (["Bearer  abc"], " abc"),  # the token is what follows the exact prefix, nothing trimmed
        (["Bearer "], "empty"),
        (["Bearer"], "bad_prefix"),
        (["BEARER abc"], "bad_prefix"),
        (["bearer abc"], "bad_prefix"),
        (["Basic abc"], "bad_prefix"),
        ([" Bearer abc"], "bad_prefix"),
        (["Bearer abc", "Bearer abc"], "malformed"),
        (["Bearer " + "a" * MAX_TOKEN_BYTES], "a" * MAX_TOKEN_BYTES),
        (["Bearer " + "a" * (MAX_TOKEN_BYTES + 1)], "too_large"),
    ],
)
def test_extract_bearer_token(values: Sequence[str], outcome: str) -> None:
    if outcome in FAILURE_REASONS:
        with pytest.raises(AuthenticationFailed) as info:
            extract_bearer_token(values)
        assert info.value.reason == outcome
    else:
        assert extract_bearer_token(values) == outcome
