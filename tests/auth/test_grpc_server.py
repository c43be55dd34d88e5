"""The service gRPC server's limits and refuse-before-reading, over real gRPC on loopback.

An unauthenticated call is refused without its body being deserialized (a recording
deserializer proves it, and proves it *is* called for an admitted call); the message-size cap
fits the largest legitimate message with room to spare and refuses a bigger one; the
concurrent-RPC cap answers RESOURCE_EXHAUSTED past it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from darktower.auth.grpc_server import (
    MAX_CONCURRENT_RPCS,
    MAX_RECEIVE_MESSAGE_BYTES,
    service_grpc_server,
)
from darktower.auth.interceptor import UNAUTHENTICATED_MESSAGE, ServiceAuthInterceptor
from darktower.auth.keys import TrustedKey
from darktower.auth.tokens import SCOPE_MC, ServiceType, TokenVerifier, mint_service_token
from darktower.common.ids import MAX_ID_BYTES
from darktower.common.limits import MAX_MEETING_LOADS
from darktower.wire.dark_tower import internal_pb2 as pb
from tests.support.waiting import eventually

SERVICE = "limits-test"
GC_KEY = Ed25519PrivateKey.generate()
MC_KEY = Ed25519PrivateKey.generate()
RAW = "/darktower.test.Raw/"
UINT32_MAX = 2**32 - 1


def largest_comprehensive_heartbeat() -> pb.ComprehensiveHeartbeatRequest:
    """Every field at its largest: 10 000 meetings with 255-byte ids and uint32 counts."""
    capacity = pb.ControllerCapacity(
        max_meetings=UINT32_MAX,
        current_meetings=UINT32_MAX,
        max_participants=UINT32_MAX,
        current_participants=UINT32_MAX,
    )
    request = pb.ComprehensiveHeartbeatRequest(
        controller_id="c" * MAX_ID_BYTES,
        capacity=capacity,
        health=pb.DRAINING,
        cpu_usage_percent=100.0,
        memory_usage_percent=100.0,
    )
    for i in range(MAX_MEETING_LOADS):
        request.meetings.add(
            meeting_id=f"{i:05d}".ljust(MAX_ID_BYTES, "m"), participants=UINT32_MAX
        )
    return request


def test_the_largest_legitimate_message_fits_the_cap_with_headroom() -> None:
    size = largest_comprehensive_heartbeat().ByteSize()
    assert size == 2_670_296, "the number documented in darktower.auth.grpc_server"
    assert size < MAX_RECEIVE_MESSAGE_BYTES * 0.9
    assert MAX_RECEIVE_MESSAGE_BYTES < 4 * 1024 * 1024, "below gRPC's own default"


@dataclass
class Recorder:
    """What the server's raw methods saw: bodies deserialized and calls handled."""

    deserialized: list[int] = field(default_factory=list)
    handled: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    holding: int = 0

    def deserialize(self, data: bytes) -> bytes:
        self.deserialized.append(len(data))
        return data

    async def echo_size(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        self.handled += 1
        return str(len(request)).encode()

    async def hold(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        self.holding += 1
        await self.release.wait()
        return b"released"


@dataclass
class Server:
    channel: grpc.aio.Channel
    recorder: Recorder

    async def call(self, method: str, body: bytes, token: str | None) -> bytes:
        metadata = None if token is None else (("authorization", f"Bearer {token}"),)
        stub = self.channel.unary_unary(RAW + method, None, None)
        response: bytes = await stub(body, metadata=metadata, timeout=30)
        return response


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    verifier = TokenVerifier(
        [
            TrustedKey.bound(GC_KEY.public_key(), ServiceType.GLOBAL_CONTROLLER, "gc-1"),
            TrustedKey.bound(MC_KEY.public_key(), ServiceType.MEETING_CONTROLLER, "mc-1"),
        ],
        required_scope=SCOPE_MC,
        allowed_callers={ServiceType.GLOBAL_CONTROLLER},
    )
    recorder = Recorder()
    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(
            recorder.echo_size, request_deserializer=recorder.deserialize
        ),
        "Hold": grpc.unary_unary_rpc_method_handler(recorder.hold),
    }
    grpc_server = service_grpc_server(
        interceptors=[ServiceAuthInterceptor(verifier, service=SERVICE)]
    )
    grpc_server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("darktower.test.Raw", handlers),)
    )
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    await grpc_server.start()
    options = [("grpc.max_send_message_length", 8 * 1024 * 1024)]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            yield Server(channel, recorder)
    finally:
        recorder.release.set()
        await grpc_server.stop(None)


def gc_token() -> str:
    return mint_service_token(
        GC_KEY, service_type=ServiceType.GLOBAL_CONTROLLER, scope=SCOPE_MC, issuer="gc-1"
    )


def mc_token() -> str:
    return mint_service_token(
        MC_KEY, service_type=ServiceType.MEETING_CONTROLLER, scope=SCOPE_MC, issuer="mc-1"
    )


@pytest.mark.parametrize(
    ("token", "code", "message"),
    [
        (None, grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE),
        ("not-a-token", grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE),
        (mc_token(), grpc.StatusCode.PERMISSION_DENIED, "not allowed"),
    ],
)
async def test_a_refused_call_is_never_deserialized(
    server: Server, token: str | None, code: grpc.StatusCode, message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await server.call("Echo", b"x" * 1000, token)

    assert info.value.code() == code
    assert message in (info.value.details() or "")
    assert server.recorder.deserialized == []
    assert server.recorder.handled == 0


async def test_an_admitted_call_is_deserialized_once(server: Server) -> None:
    assert await server.call("Echo", b"x" * 1000, gc_token()) == b"1000"
    assert server.recorder.deserialized == [1000]


async def test_an_unknown_method_is_refused_like_a_known_one(server: Server) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await server.call("NoSuchMethod", b"x", None)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert info.value.details() == UNAUTHENTICATED_MESSAGE


async def test_the_largest_heartbeat_passes_and_a_bigger_message_is_refused(
    server: Server,
) -> None:
    largest = largest_comprehensive_heartbeat().SerializeToString()
    assert await server.call("Echo", largest, gc_token()) == str(len(largest)).encode()

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await server.call("Echo", b"x" * (MAX_RECEIVE_MESSAGE_BYTES + 1), gc_token())
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert server.recorder.deserialized == [len(largest)]


async def test_calls_past_the_concurrency_cap_are_resource_exhausted(server: Server) -> None:
    token = gc_token()
    held = [
        asyncio.create_task(server.call("Hold", b"", token)) for _ in range(MAX_CONCURRENT_RPCS)
    ]
    try:
        await eventually(
            lambda: server.recorder.holding == MAX_CONCURRENT_RPCS,
            timeout=30,
            what=f"{MAX_CONCURRENT_RPCS} calls held",
        )

        with pytest.raises(grpc.aio.AioRpcError) as info:
            await server.call("Hold", b"", token)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        server.recorder.release.set()
        results = await asyncio.gather(*held, return_exceptions=True)
    assert results == [b"released"] * MAX_CONCURRENT_RPCS
