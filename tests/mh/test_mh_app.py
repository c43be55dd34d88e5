"""`MhApp` (what `darktower mh` runs) against a real GC and its own real Janus: registration
and load reports, MediaHandlerService for MCs only, and a Janus that dies under it."""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from darktower.auth.client import ServiceTokenProvider
from darktower.auth.keys import load_private_key
from darktower.auth.service_types import ServiceType
from darktower.auth.tokens import GC_AUDIENCE, SCOPE_GC, SCOPE_MC, SCOPE_MH
from darktower.gc.domain import Health
from darktower.mh.server import MhApp
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc
from darktower.wire.dark_tower import signaling_pb2 as sig
from tests.client import InProcessFleet, in_process_fleet
from tests.support.janus_client import janus_client, requires_janus
from tests.support.media import mh_settings
from tests.support.waiting import eventually

pytestmark = [requires_janus, pytest.mark.timeout(120)]

MH_ID = "mh-1"


@dataclass
class Setup:
    fleet: InProcessFleet
    mh: MhApp
    channel: grpc.aio.Channel

    def tokens(
        self,
        *,
        service: str = "mc",
        issuer: str = "mc-1",
        audience: str = MH_ID,
        scope: str = SCOPE_MH,
    ) -> ServiceTokenProvider:
        kinds = {
            "mc": ServiceType.MEETING_CONTROLLER,
            "gc": ServiceType.GLOBAL_CONTROLLER,
            "mh": ServiceType.MEDIA_HANDLER,
        }
        return ServiceTokenProvider(
            load_private_key(self.fleet.key_dir / service / f"{issuer}.key"),
            service_type=kinds[service],
            scope=scope,
            issuer=issuer,
            subject=issuer,
            audience=audience,
        )

    async def register(
        self, meeting: str, participant: str, tokens: ServiceTokenProvider | None = None
    ) -> pb.RegisterParticipantResponse:
        stub = pb_grpc.MediaHandlerServiceStub(self.channel)
        answer: pb.RegisterParticipantResponse = await stub.Register(
            pb.RegisterParticipant(meeting_id=meeting, participant_id=participant),
            metadata=(tokens or self.tokens()).metadata(),
            timeout=10,
        )
        return answer


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    async with in_process_fleet(tmp_path, "redis://unused", mcs=0, mhs=0) as fleet:
        settings = mh_settings(fleet.key_dir, fleet.gc_grpc, MH_ID, tmp_path).model_copy(
            update={"max_streams": 10}
        )
        mh = MhApp(settings)
        await mh.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{mh.grpc_port}")
        try:
            yield Setup(fleet, mh, channel)
        finally:
            await channel.close(None)
            await mh.stop()


async def _gc_view(setup: Setup) -> tuple[Health, str, str] | None:
    store = setup.fleet.gc.store
    assert store is not None
    for handler in await store.list_media_handlers():
        if handler.id == MH_ID:
            return handler.health, handler.webtransport_endpoint, handler.grpc_endpoint
    return None


async def _gc_sees(setup: Setup, health: Health) -> bool:
    view = await _gc_view(setup)
    return view is not None and view[0] == health


async def test_registers_reports_and_admits_a_participant(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mh = setup.mh
    await eventually(lambda: mh.ready()[0], timeout=30, what="MH ready")
    await eventually(lambda: _gc_sees(setup, Health.HEALTHY), timeout=10, what="GC: healthy")
    view = await _gc_view(setup)
    assert view is not None
    _, media_url, grpc_url = view
    assert media_url == mh.media_url and media_url.startswith("http://127.0.0.1:")
    assert grpc_url == f"http://127.0.0.1:{mh.grpc_port}"

    answer = await setup.register(
        "meeting-a",
        "alice",
        # The original message carries stream descriptions; Janus negotiates its own.
    )
    assert answer.media_handler_url == mh.media_url
    assert int(answer.room) == mh.rooms.room_of("meeting-a")
    assert mh.reporter is not None
    async with janus_client(answer.media_handler_url, answer.connection_token) as client:
        assert (await client.create_session())["janus"] == "success"
        assert (await client.attach_videoroom())["janus"] == "success"
        assert (await client.join(int(answer.room)))["videoroom"] == "joined"
        # A session in the room shows in the figures; it publishes nothing, so no stream
        # (streams are publishers and live subscriptions: tests/mh/test_media_load.py).
        reporter = mh.reporter
        await eventually(
            lambda: reporter.last_figures is not None and reporter.last_figures.sessions == 1,
            timeout=10,
            what="a report with the participant's session",
        )
        assert reporter.last is not None and reporter.last.current_streams == 0
    await eventually(
        lambda: reporter.last_figures is not None and reporter.last_figures.sessions == 0,
        timeout=10,
        what="a report without it",
    )

    ended = await pb_grpc.MediaHandlerServiceStub(setup.channel).EndMeeting(
        pb.EndMediaMeetingRequest(meeting_id="meeting-a"),
        metadata=setup.tokens().metadata(),
        timeout=10,
    )
    assert ended.ended and mh.rooms.room_of("meeting-a") is None

    # Nothing secret reached a log record.
    assert mh.admin._secret.get_secret_value() not in caplog.text
    assert mh.admin._room_key.get_secret_value() not in caplog.text
    assert answer.connection_token not in caplog.text


@pytest.mark.parametrize(
    ("caller", "code"),
    [
        ({"service": "gc", "issuer": "gc-test", "scope": SCOPE_MC}, "UNAUTHENTICATED"),
        ({"service": "mh", "issuer": MH_ID, "scope": SCOPE_GC}, "UNAUTHENTICATED"),
        ({"audience": "mh-2"}, "UNAUTHENTICATED"),
        ({"audience": GC_AUDIENCE, "scope": SCOPE_GC}, "UNAUTHENTICATED"),
        ({"scope": SCOPE_GC}, "UNAUTHENTICATED"),
    ],
    ids=["a-gc", "an-mh", "another-mh's-audience", "an-mc's-gc-token", "wrong-scope"],
)
async def test_only_mcs_may_call(setup: Setup, caller: dict[str, str], code: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await setup.register("meeting-a", "alice", setup.tokens(**caller))
    assert caught.value.code().name == code
    assert setup.mh.rooms.meetings == 0


async def test_only_mcs_may_mute(setup: Setup) -> None:
    """A host mute through the MH: only an MC's token for this MH, only well-formed ids."""
    await setup.register("meeting-a", "alice")
    stub = pb_grpc.MediaHandlerServiceStub(setup.channel)
    request = pb.MuteMediaRequest(meeting_id="meeting-a", participant_id="alice", muted=True)
    for metadata in (
        (),
        setup.tokens(service="gc", issuer="gc-test", scope=SCOPE_MC).metadata(),
        setup.tokens(audience="mh-2").metadata(),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.MuteParticipant(request, metadata=metadata, timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    for bad in (
        pb.MuteMediaRequest(meeting_id="m" * 256, participant_id="alice", muted=True),
        pb.MuteMediaRequest(meeting_id="meeting-a", participant_id="", muted=True),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.MuteParticipant(bad, metadata=setup.tokens().metadata(), timeout=5)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # An MC's call: accepted (alice publishes nothing yet, so no stream is moderated now).
    answer = await stub.MuteParticipant(request, metadata=setup.tokens().metadata(), timeout=5)
    assert answer.streams == 0


async def test_no_token_and_malformed_requests(setup: Setup) -> None:
    stub = pb_grpc.MediaHandlerServiceStub(setup.channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Register(pb.RegisterParticipant(meeting_id="m", participant_id="p"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    bad = [
        pb.RegisterParticipant(meeting_id="m" * 256, participant_id="p"),
        pb.RegisterParticipant(meeting_id="m{x}", participant_id="p"),
        pb.RegisterParticipant(meeting_id="m", participant_id=""),
        pb.RegisterParticipant(
            meeting_id="m",
            participant_id="p",
            streams=[sig.MediaStream(stream_id=str(i)) for i in range(17)],
        ),
    ]
    for request in bad:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Register(request, metadata=setup.tokens().metadata(), timeout=5)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RouteMedia(pb.RouteMediaCommand(), metadata=setup.tokens().metadata())
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert setup.mh.rooms.meetings == 0


async def test_a_dead_janus_makes_the_mh_unready_unhealthy_and_is_restarted(
    setup: Setup,
) -> None:
    mh = setup.mh
    await eventually(lambda: mh.ready()[0], timeout=30, what="MH ready")
    before = await setup.register("meeting-a", "alice")
    process = mh.keeper.process
    assert process is not None
    process.signal_group(signal.SIGKILL)

    await eventually(lambda: mh.ready() == (False, "janus down"), timeout=10, what="unready")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await setup.register("meeting-a", "bob")
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == "media server unavailable"

    await eventually(lambda: _gc_sees(setup, Health.UNHEALTHY), timeout=10, what="GC: MH unhealthy")
    await eventually(lambda: mh.ready()[0], timeout=30, what="MH ready again")
    await eventually(lambda: _gc_sees(setup, Health.HEALTHY), timeout=10, what="GC: healthy")
    # The old Janus's rooms and tokens died with it; registering again works.
    assert mh.rooms.meetings == 0
    after = await setup.register("meeting-a", "alice")
    assert after.connection_token != before.connection_token
    async with janus_client(after.media_handler_url, before.connection_token) as client:
        assert (await client.create_session())["janus"] == "error"


async def test_an_unexpected_error_is_internal_logged_and_counted(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug under an RPC (here the rooms' `end` raising something no caller expects) answers
    INTERNAL with the fixed message, never the exception's text; the MH logs it with its
    traceback and counts it in `mh_grpc_internal_errors_total{method}` (its /metrics)."""
    leak = "janus admin secret s3cr3t at 10.0.0.9"

    async def broken_end(*args: object, **kwargs: object) -> bool:
        raise RuntimeError(leak)

    async def counted() -> float:
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.get(f"http://{setup.mh.settings.health_bind}/metrics")
        for family in text_string_to_metric_families(answer.text):
            for sample in family.samples:
                wanted = sample.labels == {"method": "EndMeeting"}
                if sample.name == "mh_grpc_internal_errors_total" and wanted:
                    return sample.value
        raise AssertionError("mh_grpc_internal_errors_total{method=EndMeeting} not exported")

    before = await counted()
    monkeypatch.setattr(setup.mh.rooms, "end", broken_end)
    stub = pb_grpc.MediaHandlerServiceStub(setup.channel)
    with (
        caplog.at_level(logging.ERROR, logger="darktower.mh.grpc_service"),
        pytest.raises(grpc.aio.AioRpcError) as caught,
    ):
        await stub.EndMeeting(
            pb.EndMediaMeetingRequest(meeting_id="meeting-a"),
            metadata=setup.tokens().metadata(),
            timeout=5,
        )
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == "internal error"
    assert leak not in f"{caught.value.details()} {caught.value.debug_error_string()}"
    assert await counted() == before + 1
    [record] = [r for r in caplog.records if r.name == "darktower.mh.grpc_service"]
    assert record.getMessage() == "EndMeeting failed: RuntimeError"
    assert record.exc_info is not None
