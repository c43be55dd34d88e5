"""Scenario 10 (gRPC): every RPC of the three services, fed random, huge and malformed
requests with valid tokens, answers normally or with one of its defined status codes — never
INTERNAL, UNKNOWN or UNAVAILABLE — changes no state when it refuses, and keeps serving.

One MC (real Redis) and one GC (SQLite, or PostgreSQL with `DARKTOWER_TEST_DATABASE_URL`) run
in-process for the whole module, on an event loop in a background thread (`BackgroundLoop`):
hypothesis drives sync test functions, which call the servers with the blocking gRPC client and
read their state through the loop. The RPC list comes from the proto's service descriptors, so
a new RPC fails `test_every_rpc_has_a_contract` until it is given its codes and a valid call.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import grpc
import pytest
import redis
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings

from darktower.auth.client import ServiceTokenProvider
from darktower.auth.keys import generate_key_files
from darktower.auth.tokens import GC_AUDIENCE
from darktower.embedded.redis import free_port
from darktower.gc.domain import Controller, MediaHandler
from darktower.gc.server import GcApp
from darktower.gc.settings import GcSettings
from darktower.mc.server import McApp
from darktower.mc.settings import McSettings
from darktower.wire.dark_tower import internal_pb2 as pb
from tests.faults.inprocess import (
    BackgroundLoop,
    create_database,
    drop_database,
    make_mc,
    token_provider,
)
from tests.faults.strategies import (
    SERVICES,
    message_class,
    oversized_request,
    request_strategy,
)

MC_ID = "mc-fuzz"
KNOWN_MC = "mc-known"
KNOWN_MH = "mh-known"
CALL_TIMEOUT_SECONDS = 10.0

Code = grpc.StatusCode
_T = TypeVar("_T")
McState = tuple[frozenset[bytes], frozenset[str]]
Registry = tuple[list[Controller], list[MediaHandler]]

FUZZ = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# How long the MC's state must stay unchanged before a call is judged on what it changed.
SETTLE_SECONDS = 0.02
_MC = "dark_tower.internal.MeetingControllerService"
_GC = "dark_tower.internal.GlobalControllerService"
_MH = "dark_tower.internal.MediaHandlerRegistryService"
_MEETING_COMMANDS = ("EndMeeting", "RemoveParticipant", "MuteParticipant", "GetMeetingRoster")

# Beyond OK: what each RPC may answer to a request it cannot use. RESOURCE_EXHAUSTED is gRPC's
# own answer to a message over the receive limit, before any of our code runs.
ALLOWED_CODES: dict[str, frozenset[Code]] = {
    f"{_MC}.AssignMeetingWithMh": frozenset({Code.INVALID_ARGUMENT, Code.RESOURCE_EXHAUSTED}),
    f"{_MC}.RegisterController": frozenset({Code.RESOURCE_EXHAUSTED}),
    f"{_MC}.SendHeartbeat": frozenset({Code.RESOURCE_EXHAUSTED}),
    f"{_MC}.Assign": frozenset({Code.RESOURCE_EXHAUSTED}),
    # The meeting API's commands (README "Application API"): a bad id or identity.
    **{
        f"{_MC}.{rpc}": frozenset({Code.INVALID_ARGUMENT, Code.RESOURCE_EXHAUSTED})
        for rpc in _MEETING_COMMANDS
    },
    # At the GC a request for another id than the caller's is PERMISSION_DENIED (issue 13).
    f"{_GC}.RegisterMC": frozenset(
        {Code.INVALID_ARGUMENT, Code.PERMISSION_DENIED, Code.RESOURCE_EXHAUSTED}
    ),
    f"{_GC}.FastHeartbeat": frozenset(
        {Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.PERMISSION_DENIED, Code.RESOURCE_EXHAUSTED}
    ),
    f"{_GC}.ComprehensiveHeartbeat": frozenset(
        {Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.PERMISSION_DENIED, Code.RESOURCE_EXHAUSTED}
    ),
    f"{_GC}.NotifyMeetingEnded": frozenset(
        {Code.INVALID_ARGUMENT, Code.PERMISSION_DENIED, Code.RESOURCE_EXHAUSTED}
    ),
    # Live migration (issue 16): only the MC the meeting is live on may ask.
    f"{_GC}.MigrateMeeting": frozenset(
        {Code.INVALID_ARGUMENT, Code.PERMISSION_DENIED, Code.RESOURCE_EXHAUSTED}
    ),
    f"{_MH}.RegisterMH": frozenset(
        {Code.INVALID_ARGUMENT, Code.PERMISSION_DENIED, Code.RESOURCE_EXHAUSTED}
    ),
    f"{_MH}.SendLoadReport": frozenset(
        {Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.PERMISSION_DENIED, Code.RESOURCE_EXHAUSTED}
    ),
}

_CAPACITY = pb.ControllerCapacity(
    max_meetings=10, current_meetings=1, max_participants=100, current_participants=5
)

# A request each RPC must answer with OK, before and after the fuzz.
VALID_REQUESTS: dict[str, Message] = {
    f"{_MC}.AssignMeetingWithMh": pb.AssignMeetingWithMhRequest(
        meeting_id="valid-after-fuzz",
        mh_assignments=[
            pb.MhAssignment(mh_id="mh-1", webtransport_endpoint="https://mh-1.example:4433", role=1)
        ],
        requesting_gc_id="gc-fuzz",
    ),
    f"{_MC}.RegisterController": pb.RegisterMeetingController(
        controller_id="legacy", region="test", endpoint="http://legacy:1", capacity=_CAPACITY
    ),
    f"{_MC}.SendHeartbeat": pb.Heartbeat(controller_id="legacy", capacity=_CAPACITY, health=1),
    f"{_MC}.Assign": pb.AssignMeeting(
        meeting_id="legacy", config=pb.MeetingConfig(display_name="x")
    ),
    **{
        f"{_MC}.{rpc}": pb.MeetingCommandRequest(
            meeting_id="not-hosted-here", identity="ada", requesting_gc_id="gc-fuzz"
        )
        for rpc in _MEETING_COMMANDS
    },
    f"{_GC}.RegisterMC": pb.RegisterMCRequest(
        id=KNOWN_MC,
        region="test",
        grpc_endpoint="http://127.0.0.1:1",
        max_meetings=10,
        max_participants=100,
    ),
    f"{_GC}.FastHeartbeat": pb.FastHeartbeatRequest(
        controller_id=KNOWN_MC, capacity=_CAPACITY, health=pb.HEALTHY
    ),
    f"{_GC}.ComprehensiveHeartbeat": pb.ComprehensiveHeartbeatRequest(
        controller_id=KNOWN_MC,
        capacity=_CAPACITY,
        health=pb.HEALTHY,
        cpu_usage_percent=12.5,
        memory_usage_percent=40,
    ),
    f"{_GC}.NotifyMeetingEnded": pb.NotifyMeetingEndedRequest(
        meeting_id="never-placed", region="test"
    ),
    # Nothing live to move: answered `placed: false` with a reason, the registry unchanged.
    f"{_GC}.MigrateMeeting": pb.MigrateMeetingRequest(
        controller_id=KNOWN_MC, meeting_id="never-placed"
    ),
    f"{_MH}.RegisterMH": pb.RegisterMHRequest(
        handler_id=KNOWN_MH,
        region="test",
        webtransport_endpoint="https://mh-known.example:4433",
        grpc_endpoint="http://127.0.0.1:2",
        max_streams=100,
        zone="z1",
    ),
    f"{_MH}.SendLoadReport": pb.MHLoadReportRequest(
        handler_id=KNOWN_MH,
        current_streams=3,
        health=pb.HEALTHY,
        cpu_usage_percent=1,
        memory_usage_percent=2,
        bandwidth_usage_percent=3,
    ),
}

# Not fuzzed here, with where their bad input is tested instead:
# - MediaHandlerService is served by `darktower mh` in front of a real Janus, not by the MC or
#   the GC running in this module: tests/mh/test_mh_app.py and tests/mh/test_media_join.py feed
#   it forged, oversized, malformed and someone else's requests;
# - DrainController's one field is informational, so every well-formed request drains the MC
#   this whole module shares. A call without a GC token addressed to this MC is refused by the
#   interceptor as every MC RPC is (tests/auth/test_attacks.py); the operator route that makes
#   the GC call it is attacked in tests/mc/test_migration.py and tests/gc/test_drain_access.py.
NOT_FUZZED_HERE = {"dark_tower.internal.MediaHandlerService", f"{_MC}.DrainController"}
METHODS: list[MethodDescriptor] = [
    m
    for service in SERVICES
    if service.full_name not in NOT_FUZZED_HERE
    for m in service.methods
    if f"{service.full_name}.{m.name}" not in NOT_FUZZED_HERE
]
_LEGACY = {f"{_MC}.RegisterController", f"{_MC}.SendHeartbeat", f"{_MC}.Assign"}


def _method_name(method: MethodDescriptor) -> str:
    return f"{method.containing_service.full_name}.{method.name}"


@dataclass
class Servers:
    loop: BackgroundLoop
    mc: McApp
    gc: GcApp
    redis: redis.Redis
    channels: dict[str, grpc.Channel]
    tokens: dict[str, ServiceTokenProvider]
    last_registry: Registry | None = None

    def call(self, method: MethodDescriptor, request: Message) -> tuple[Code, Message | None]:
        """The status code and, on OK, the answer of one call with the caller's valid token."""
        service = method.containing_service.full_name
        rpc = self.channels[service].unary_unary(
            f"/{service}/{method.name}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=message_class(method.output_type).FromString,
        )
        try:
            answer = rpc(
                request, metadata=self.tokens[service].metadata(), timeout=CALL_TIMEOUT_SECONDS
            )
        except grpc.RpcError as exc:
            return exc.code(), None
        return Code.OK, answer

    def mc_state(self) -> McState:
        """Every Redis key and every hosted meeting."""
        return frozenset(self.redis.keys("*")), frozenset(self.mc.controller.meetings)

    def settled_mc_state(self, *, within: float = 5.0) -> McState:
        """`mc_state` once it stays the same for SETTLE_SECONDS: a meeting accepted by an
        earlier call finishes taking over (its state written, its `meeting_started` event
        recorded) after that call has answered, and must not be blamed on the next one."""
        deadline = time.monotonic() + within
        state = self.mc_state()
        while time.monotonic() < deadline:
            time.sleep(SETTLE_SECONDS)
            again = self.mc_state()
            if again == state:
                return state
            state = again
        return state

    def registry(self) -> Registry:
        store = self.gc.store
        assert store is not None
        behind = [b for b in (self.gc.heartbeats, self.gc.load_reports) if b is not None]

        async def read() -> Registry:
            # Heartbeats and load reports are written behind: settle the accepted ones first.
            for batcher in behind:
                await batcher.flush()
            return await store.list_controllers(), await store.list_media_handlers()

        return self.loop.run(read())


@pytest.fixture(scope="module")
def servers(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    tmp = tmp_path_factory.mktemp("faults-grpc")
    key_dir = tmp / "keys"
    generate_key_files(key_dir)
    sync_redis = redis.Redis.from_url(redis_url)
    sync_redis.flushdb()
    with BackgroundLoop() as loop:
        database = loop.run(create_database(tmp))
        gc = GcApp(
            GcSettings(
                id="gc-fuzz",
                region="test",
                grpc_bind="127.0.0.1:0",
                http_bind="127.0.0.1:0",
                database_url=database.url,
                service_key_file=key_dir / "gc.key",
                trusted_mc_key_files=[key_dir / "mc.pub"],
                trusted_mh_key_files=[key_dir / "mh.pub"],
                allow_unbound_keys=True,  # the legacy trio, by opt-in
                # Nothing here is stale during the run: the registry changes only by our calls.
                staleness_seconds=3600,
                sweep_interval_seconds=1800,  # below staleness, or the settings are refused
            )
        )
        mc_settings = McSettings(
            id=MC_ID,
            region="test",
            grpc_bind="127.0.0.1:0",
            health_bind=f"127.0.0.1:{free_port()}",
            redis_url=redis_url,
            client_enabled=False,  # client signaling is not what this fuzzes
            gc_endpoint="",
            trusted_gc_key_files=[key_dir / "gc.pub"],
            allow_unbound_keys=True,  # the legacy trio, by opt-in
            max_meetings=100_000,
            max_participants=10_000_000,
            drain_seconds=5,
            redis_check_seconds=0.5,
            meeting_touch_seconds=60,
        )
        # Built on the loop: grpc.aio binds its server to the loop current at construction.
        mc = loop.run(make_mc(mc_settings))
        channels: dict[str, grpc.Channel] = {}
        try:
            loop.run(gc.start())
            loop.run(mc.start())
            channels[_MC] = grpc.insecure_channel(f"127.0.0.1:{mc.grpc_port}")
            channels[_GC] = channels[_MH] = grpc.insecure_channel(f"127.0.0.1:{gc.grpc_port}")
            tokens = {
                _MC: token_provider(key_dir, "gc", issuer="gc-fuzz", audience=MC_ID),
                _GC: token_provider(key_dir, "mc", issuer=KNOWN_MC, audience=GC_AUDIENCE),
                _MH: token_provider(key_dir, "mh", issuer=KNOWN_MH, audience=GC_AUDIENCE),
            }
            running = Servers(loop, mc, gc, sync_redis, channels, tokens)
            # The known MC and MH exist, so heartbeats and load reports can reach them.
            for name in (f"{_GC}.RegisterMC", f"{_MH}.RegisterMH"):
                assert running.call(_method_by_name(name), VALID_REQUESTS[name])[0] == Code.OK
            yield running
        finally:
            for channel in set(channels.values()):
                channel.close()
            loop.run(mc.stop(deadline_seconds=3))
            loop.run(gc.stop())
            loop.run(drop_database(database))
            sync_redis.flushdb()
            sync_redis.close()


def _method_by_name(name: str) -> MethodDescriptor:
    return next(m for m in METHODS if _method_name(m) == name)


def _accepted(answer: Message | None) -> bool:
    """The answer's `accepted` (or `acknowledged`) flag; False for no answer."""
    if answer is None:
        return False
    fields = answer.DESCRIPTOR.fields_by_name
    flag = "accepted" if "accepted" in fields else "acknowledged"
    return bool(getattr(answer, flag))


def _check_mc(
    servers: Servers,
    name: str,
    request: Message,
    code: Code,
    answer: Message | None,
    before: McState,
) -> None:
    """Unchanged by a refusal (and by every legacy call); an accepted meeting is hosted and
    owned in Redis."""
    after = servers.mc_state()
    if isinstance(request, pb.MeetingCommandRequest):
        _check_command(servers, name, request, code, answer, before, after)
        return
    if name in _LEGACY:
        assert not _accepted(answer), f"legacy {name} must answer 'not accepted'"
    if code != Code.OK or name in _LEGACY or not _accepted(answer):
        assert after == before, f"{name} refused ({code.name}) but changed the MC's state"
        return
    assert isinstance(request, pb.AssignMeetingWithMhRequest)
    assert request.meeting_id in after[1]
    assert servers.redis.get(f"meeting:{{{request.meeting_id}}}:owner") == MC_ID.encode()


def _check_command(
    servers: Servers,
    name: str,
    request: pb.MeetingCommandRequest,
    code: Code,
    answer: Message | None,
    before: McState,
    after: McState,
) -> None:
    """A refused command, one for a meeting not hosted here, a mute (no participants: client
    signaling is off) or a roster read change nothing; an end ends the meeting; a removal
    bars the identity in the meeting's state."""
    hosted = code == Code.OK and bool(getattr(answer, "hosted", False))
    if not hosted or name.endswith((".MuteParticipant", ".GetMeetingRoster")):
        assert after == before, f"{name} ({code.name}, hosted={hosted}) changed the MC's state"
    elif name.endswith(".EndMeeting"):
        assert request.meeting_id not in after[1]
        assert not servers.redis.exists(f"meeting:{{{request.meeting_id}}}:state")
    else:
        state = f"meeting:{{{request.meeting_id}}}:state"
        assert servers.redis.hexists(state, f"removed:{request.identity}")


def _check_gc(name: str, request: Message, code: Code, before: Registry, after: Registry) -> None:
    """Unchanged by a refusal; a registration is in the registry; a heartbeat or report that
    was acknowledged came from a registered peer."""
    if code != Code.OK:
        assert after == before, f"{name} refused ({code.name}) but changed the registry"
        return
    controllers, handlers = after
    if isinstance(request, pb.RegisterMCRequest):
        assert any(
            c.id == request.id and c.grpc_endpoint == request.grpc_endpoint for c in controllers
        )
    elif isinstance(request, pb.RegisterMHRequest):
        assert any(h.id == request.handler_id for h in handlers)
    elif isinstance(request, pb.FastHeartbeatRequest | pb.ComprehensiveHeartbeatRequest):
        assert request.controller_id in {c.id for c in before[0]}, "heartbeat of an unknown MC"
    elif isinstance(request, pb.MHLoadReportRequest):
        assert request.handler_id in {h.id for h in before[1]}, "report of an unknown MH"


def _call_and_check(servers: Servers, method: MethodDescriptor, request: Message) -> Code:
    """One call; its code, after checking what it did to the server's state."""
    name = _method_name(method)
    if method.containing_service.full_name == _MC:
        mc_before = servers.settled_mc_state()
        code, answer = servers.call(method, request)
        _check_mc(servers, name, request, code, answer, mc_before)
    else:
        # Only our calls change the registry (the sweeper is idle): the state after one call
        # is the state before the next.
        gc_before = servers.last_registry or servers.registry()
        code, _ = servers.call(method, request)
        servers.last_registry = servers.registry()
        _check_gc(name, request, code, gc_before, servers.last_registry)
    return code


def test_every_rpc_has_a_contract() -> None:
    names = {_method_name(m) for m in METHODS}
    assert names == set(ALLOWED_CODES), "give each RPC its allowed codes"
    assert names == set(VALID_REQUESTS), "give each RPC a valid request"


def _no_meeting_ends_by_itself(request: Message) -> None:
    """A meeting accepted with a short empty timeout (the meeting API's settings) would end on
    its own while later requests are checked for changing nothing; its timeout is raised to an
    hour, everything else stays as drawn. The settings' bounds have their own table test
    (tests/common/test_meeting_settings.py)."""
    if not isinstance(request, pb.AssignMeetingWithMhRequest) or not request.HasField("settings"):
        return
    if 0 < request.settings.empty_timeout_seconds < 3600:
        request.settings.empty_timeout_seconds = 3600


@pytest.mark.parametrize("method", METHODS, ids=_method_name)
def test_bad_input_gets_a_defined_answer(servers: Servers, method: MethodDescriptor) -> None:
    name = _method_name(method)
    allowed = ALLOWED_CODES[name] | {Code.OK}
    servers.last_registry = None
    seen: set[Code] = set()

    @FUZZ
    @given(request=request_strategy(method.input_type, known_ids=(KNOWN_MC, KNOWN_MH)))
    def fuzz(request: Message) -> None:
        _no_meeting_ends_by_itself(request)
        code = _call_and_check(servers, method, request)
        seen.add(code)
        assert code in allowed, f"{name} answered {code.name}"

    fuzz()
    assert seen  # the fuzz ran
    code, answer = servers.call(method, VALID_REQUESTS[name])
    assert code == Code.OK, f"{name} no longer serves a valid call"
    if name in _LEGACY:
        assert not _accepted(answer), f"legacy {name} must answer 'not accepted'"


@pytest.mark.parametrize("method", METHODS, ids=_method_name)
def test_a_message_over_the_limit_is_resource_exhausted(
    servers: Servers, method: MethodDescriptor
) -> None:
    servers.last_registry = None
    code = _call_and_check(servers, method, oversized_request(method.input_type))
    assert code == Code.RESOURCE_EXHAUSTED
    assert servers.call(method, VALID_REQUESTS[_method_name(method)])[0] == Code.OK
