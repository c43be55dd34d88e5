"""`darktower mh` reloads its keys on SIGHUP, as the MC and the GC do (README "Key rotation"):
the MC keys it trusts (`MH_TRUSTED_MC_KEY_FILES`, a directory here) and its own key
(`MH_SERVICE_KEY_FILE`, which signs its GC tokens). A real SIGHUP to this process reaches the
MH's handler (installed last in this event loop), over real gRPC against a real GC and Janus."""

from __future__ import annotations

import logging
import os
import shutil
import signal
from datetime import UTC, datetime
from pathlib import Path

import grpc
import grpc.aio
import pytest
from prometheus_client import REGISTRY

from darktower.auth.client import ServiceTokenProvider
from darktower.auth.fleet_keys import FleetKeys
from darktower.auth.keys import generate_instance_key_files, load_private_key
from darktower.auth.service_types import ServiceType
from darktower.auth.tokens import SCOPE_MH
from darktower.mh.server import MhApp
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc
from tests.client import InProcessFleet, in_process_fleet
from tests.support.janus_client import requires_janus
from tests.support.media import mh_settings
from tests.support.waiting import eventually

pytestmark = [requires_janus, pytest.mark.timeout(120)]

MH_ID = "mh-1"


def mc_tokens(key: Path, mc_id: str) -> ServiceTokenProvider:
    return ServiceTokenProvider(
        load_private_key(key),
        service_type=ServiceType.MEETING_CONTROLLER,
        scope=SCOPE_MH,
        issuer=mc_id,
        audience=MH_ID,
    )


async def register(channel: grpc.aio.Channel, tokens: ServiceTokenProvider) -> grpc.StatusCode:
    stub = pb_grpc.MediaHandlerServiceStub(channel)
    try:
        await stub.Register(
            pb.RegisterParticipant(meeting_id="standup", participant_id="alice"),
            metadata=tokens.metadata(),
            timeout=10,
        )
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def gc_auth_failures() -> float:
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name != "service_auth_failures":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("service") == "gc":
                total += sample.value
    return total


async def last_report_at(fleet: InProcessFleet) -> datetime | None:
    store = fleet.gc.store
    assert store is not None
    for handler in await store.list_media_handlers():
        if handler.id == MH_ID:
            return handler.last_report_at
    return None


def sighup() -> None:
    os.kill(os.getpid(), signal.SIGHUP)


async def test_sighup_reloads_the_trusted_mc_keys_and_the_own_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with in_process_fleet(tmp_path, "redis://unused", mcs=0, mhs=0) as fleet:
        keys = FleetKeys(fleet.key_dir)
        mh = MhApp(mh_settings(fleet.key_dir, fleet.gc_grpc, MH_ID, tmp_path))
        await mh.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{mh.grpc_port}")
        try:
            await eventually(lambda: mh.ready()[0], timeout=30, what="MH ready")
            trusted = mc_tokens(keys.key("mc", "mc-1"), "mc-1")
            assert await register(channel, trusted) == grpc.StatusCode.OK

            # An MC whose key is made later: refused until its .pub is in the directory and
            # the MH got SIGHUP; refused again once it is removed (and SIGHUP).
            later = tmp_path / "later"
            generate_instance_key_files(later, service="mc", instance_id="mc-7")
            newcomer = mc_tokens(later / "mc-7.key", "mc-7")
            assert await register(channel, newcomer) == grpc.StatusCode.UNAUTHENTICATED
            shutil.copy(later / "mc-7.pub", keys.trusted("mc") / "mc-7.pub")
            assert await register(channel, newcomer) == grpc.StatusCode.UNAUTHENTICATED
            sighup()

            async def newcomer_admitted() -> bool:
                return await register(channel, newcomer) == grpc.StatusCode.OK

            await eventually(newcomer_admitted, timeout=10, what="mc-7 trusted after SIGHUP")
            assert await register(channel, trusted) == grpc.StatusCode.OK
            (keys.trusted("mc") / "mc-7.pub").unlink()
            sighup()

            async def newcomer_refused() -> bool:
                return await register(channel, newcomer) == grpc.StatusCode.UNAUTHENTICATED

            await eventually(newcomer_refused, timeout=10, what="mc-7 refused after SIGHUP")
            assert await register(channel, trusted) == grpc.StatusCode.OK

            # The own key: a key bound to another MH is refused and the old key kept.
            old_kid = mh.signing.signing_key.kid
            stray = tmp_path / "stray"
            generate_instance_key_files(stray, service="mh", instance_id="mh-2")
            original = tmp_path / "original.key"
            shutil.copy(keys.key("mh", MH_ID), original)
            os.replace(stray / "mh-2.key", keys.key("mh", MH_ID))
            mh.reloads.run()
            assert mh.signing.signing_key.kid == old_kid
            assert "signing key not reloaded" in caplog.text
            os.replace(original, keys.key("mh", MH_ID))

            # A new key of its own: the GC learns its .pub (its own reload), then the MH gets
            # SIGHUP and signs its load reports with it; the GC keeps hearing from it.
            fresh = tmp_path / "fresh"
            generate_instance_key_files(fresh, service="mh", instance_id=MH_ID)
            os.replace(fresh / f"{MH_ID}.pub", keys.public("mh", MH_ID))
            fleet.gc.reloads.run()
            failures = gc_auth_failures()
            os.replace(fresh / f"{MH_ID}.key", keys.key("mh", MH_ID))
            sighup()
            await eventually(
                lambda: mh.signing.signing_key.kid != old_kid, timeout=10, what="new MH key"
            )
            switched = datetime.now(UTC)

            async def heard_since_the_switch() -> bool:
                at = await last_report_at(fleet)
                return at is not None and at.replace(tzinfo=at.tzinfo or UTC) > switched

            await eventually(heard_since_the_switch, timeout=10, what="a report after the switch")
            assert gc_auth_failures() == failures
            assert "signing key reloaded" in caplog.text
            assert mh.ready()[0]
        finally:
            await channel.close(None)
            await mh.stop()
