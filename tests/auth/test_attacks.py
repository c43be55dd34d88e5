"""The attacks of issue 13's security review on service tokens, over real gRPC on loopback.

The server is an MC-shaped one as the follow-up will run it: it trusts gc-1's key (bound to
gc-1) and a legacy unbound GC key without the opt-in, requires `aud` = its own id (mc-1), and
caps token lifetimes at the default 600 s. Every attack must come back UNAUTHENTICATED with the
one fixed message, bump its reason in `service_auth_failures_total`, never reach the servicer,
and never put the token in a log line. The last test shows the same server admits the honest
token, so the refusals are not an artefact of a server that refuses everything.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import REGISTRY

from darktower.auth.grpc_server import service_grpc_server
from darktower.auth.interceptor import (
    UNAUTHENTICATED_MESSAGE,
    ServiceAuthInterceptor,
    current_claims,
)
from darktower.auth.keys import TrustedKey, key_id
from darktower.auth.tokens import (
    MAX_TOKEN_BYTES,
    SCOPE_GC,
    SCOPE_MC,
    ServiceClaims,
    ServiceType,
    TokenVerifier,
    mint_service_token,
)
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc
from tests.support.mc_servicer import UncalledMcRpcs

SERVICE = "mc-attack-test"  # a metric label of its own
GC_1 = Ed25519PrivateKey.generate()  # trusted, bound to gc-1
LEGACY_GC = Ed25519PrivateKey.generate()  # trusted, unbound, no opt-in
STRANGER = Ed25519PrivateKey.generate()  # trusted by nobody
TEN_YEARS = 10 * 365 * 24 * 3600


def claims(**overrides: Any) -> dict[str, Any]:
    """An honest GC token's claims for mc-1; `None` drops a claim."""
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": "gc-1",
        "sub": "gc-1",
        "aud": "mc-1",
        "iat": now,
        "exp": now + 300,
        "service_type": ServiceType.GLOBAL_CONTROLLER.value,
        "scope": SCOPE_MC,
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def signed(payload: dict[str, Any], key: Ed25519PrivateKey = GC_1, kid: str | None = None) -> str:
    headers = {"kid": kid or key_id(key.public_key())}
    return jwt.encode(payload, key, algorithm="EdDSA", headers=headers)


def forged_signature() -> str:
    """gc-1's honest token with its payload swapped for one naming another instance."""
    header, _, signature = signed(claims()).split(".")
    payload = base64.urlsafe_b64encode(json.dumps(claims(sub="gc-2")).encode()).rstrip(b"=")
    return f"{header}.{payload.decode()}.{signature}"


# (attack, token, reason counted)
ATTACKS: list[tuple[str, Callable[[], str], str]] = [
    ("forged signature", forged_signature, "bad_signature"),
    (
        "other key under gc-1's kid",
        lambda: signed(claims(), STRANGER, kid=key_id(GC_1.public_key())),
        "bad_signature",
    ),
    ("other key", lambda: signed(claims(), STRANGER), "unknown_key"),
    ("unbound key without opt-in", lambda: signed(claims(), LEGACY_GC), "unbound_key"),
    ("sub is another instance", lambda: signed(claims(sub="gc-2")), "wrong_subject"),
    ("iss and sub both another", lambda: signed(claims(iss="gc-2", sub="gc-2")), "wrong_subject"),
    ("for another MC", lambda: signed(claims(aud="mc-2")), "wrong_audience"),
    ("without audience", lambda: signed(claims(aud=None)), "wrong_audience"),
    (
        "ten-year token",
        lambda: signed(claims(exp=int(time.time()) + TEN_YEARS)),
        "too_long_lived",
    ),
    ("exp = 10^30", lambda: signed(claims(exp=10**30)), "too_long_lived"),
    (
        "one second over the 600 s maximum",
        lambda: signed(claims(exp=int(time.time()) + 601)),
        "too_long_lived",
    ),
    (
        "expired beyond the 5 s leeway",
        lambda: signed(claims(iat=int(time.time()) - 300, exp=int(time.time()) - 6)),
        "expired",
    ),
    (
        "issued 60 s in the future",
        lambda: signed(claims(iat=int(time.time()) + 60, exp=int(time.time()) + 300)),
        "bad_claims",
    ),
    ("float iat", lambda: signed(claims(iat=time.time())), "bad_claims"),
    ("missing iat", lambda: signed(claims(iat=None)), "bad_claims"),
    ("missing sub", lambda: signed(claims(sub=None)), "bad_claims"),
    ("without scope", lambda: signed(claims(scope=None)), "wrong_scope"),
    ("empty scope", lambda: signed(claims(scope="")), "wrong_scope"),
    ("scope as a JSON list", lambda: signed(claims(scope=[SCOPE_MC])), "wrong_scope"),
    ("scope extending the name", lambda: signed(claims(scope=f"{SCOPE_MC}.all")), "wrong_scope"),
    ("scope comma-separated", lambda: signed(claims(scope=f"{SCOPE_MC},x")), "wrong_scope"),
    (
        "scope list without service.write.mc",
        lambda: signed(claims(scope=f"{SCOPE_GC} internal:meeting-token")),
        "wrong_scope",
    ),
    ("oversized token", lambda: "x" * (MAX_TOKEN_BYTES + 1), "too_large"),
    (
        "oversized signed token",
        lambda: signed(claims(pad="p" * MAX_TOKEN_BYTES)),
        "too_large",
    ),
]


def failures(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "service_auth_failures_total", {"service": SERVICE, "reason": reason}
    )
    assert value is not None, "the interceptor creates every series up front"
    return value


@dataclass
class RecordingServicer(UncalledMcRpcs):
    seen: list[ServiceClaims | None] = field(default_factory=list)

    async def AssignMeetingWithMh(
        self, request: pb.AssignMeetingWithMhRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AssignMeetingWithMhResponse:
        self.seen.append(current_claims.get())
        return pb.AssignMeetingWithMhResponse(accepted=True)

    # The legacy RPCs are not attacked here; any call of them would be a test bug.
    async def RegisterController(
        self, request: pb.RegisterMeetingController, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RegistrationResponse:
        raise AssertionError("not called in these tests")

    async def SendHeartbeat(
        self, request: pb.Heartbeat, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.HeartbeatResponse:
        raise AssertionError("not called in these tests")

    async def Assign(
        self, request: pb.AssignMeeting, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AssignMeetingResponse:
        raise AssertionError("not called in these tests")


@dataclass
class Mc:
    stub: pb_grpc.MeetingControllerServiceAsyncStub
    servicer: RecordingServicer

    async def assign(self, token: str) -> pb.AssignMeetingWithMhResponse:
        request = pb.AssignMeetingWithMhRequest(meeting_id="m-1", requesting_gc_id="gc-1")
        metadata = (("authorization", f"Bearer {token}"),)
        return await self.stub.AssignMeetingWithMh(request, metadata=metadata, timeout=10)


@pytest.fixture
async def mc() -> AsyncIterator[Mc]:
    verifier = TokenVerifier(
        [
            TrustedKey.bound(GC_1.public_key(), ServiceType.GLOBAL_CONTROLLER, "gc-1"),
            TrustedKey.unbound(LEGACY_GC.public_key()),
        ],
        required_scope=SCOPE_MC,
        allowed_callers={ServiceType.GLOBAL_CONTROLLER},
        audience="mc-1",
        allow_unbound_keys=False,
    )
    server = service_grpc_server(interceptors=[ServiceAuthInterceptor(verifier, service=SERVICE)])
    servicer = RecordingServicer()
    pb_grpc.add_MeetingControllerServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Mc(pb_grpc.MeetingControllerServiceStub(channel), servicer)
    finally:
        await server.stop(None)


@pytest.mark.parametrize(
    ("make_token", "reason"), [pytest.param(m, r, id=name) for name, m, r in ATTACKS]
)
async def test_each_attack_is_refused_counted_and_kept_out_of_the_logs(
    mc: Mc, make_token: Callable[[], str], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = make_token()
    before = failures(reason)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await mc.assign(token)

    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert info.value.details() == UNAUTHENTICATED_MESSAGE
    assert failures(reason) == before + 1
    assert mc.servicer.seen == []
    assert f"reason={reason}" in caplog.text
    signature = token.rsplit(".", 1)[-1]
    for record in caplog.records:
        assert token not in record.getMessage()
        assert signature not in record.getMessage()


@pytest.mark.parametrize(
    "scope", [SCOPE_MC, f"{SCOPE_MC} internal:meeting-token", f"internal:meeting-token {SCOPE_MC}"]
)
async def test_the_honest_token_is_admitted_whatever_else_its_scope_lists(
    mc: Mc, scope: str
) -> None:
    token = mint_service_token(
        GC_1,
        service_type=ServiceType.GLOBAL_CONTROLLER,
        scope=scope,
        issuer="gc-1",
        audience="mc-1",
    )

    assert (await mc.assign(token)).accepted

    (seen,) = mc.servicer.seen
    assert seen is not None
    assert (seen.subject, seen.audience, seen.scope) == ("gc-1", ("mc-1",), SCOPE_MC)
