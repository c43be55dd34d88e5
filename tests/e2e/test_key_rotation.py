"""Rotating the GC's signing key on a running fleet, with no failed assignment.

Real processes: a GC publishing its keys at /.well-known/jwks.json, an MC that trusts GC keys
only through that URL (MC_TRUSTED_GC_JWKS_URL, no key file), simulated MHs. Joins of new
meetings (each one an AssignMeetingWithMh from the GC to the MC) run without pause while the
GC's key file is replaced and the GC gets SIGHUP. Every join succeeds; afterwards join tokens
carry the new kid; the old key stays published for GC_RETIRED_KEY_PUBLISH_SECONDS, is accepted
by the MC meanwhile, and is refused once it is gone from the JWKS (within the MC's refresh).
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import grpc
import httpx
import jwt
import pytest

from darktower.auth.keys import generate_instance_key_files, key_id, load_private_key
from darktower.auth.tokens import SCOPE_MC, ServiceType, mint_service_token
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc
from tests.e2e.fleet import Fleet, GcProc, McProc, wait_until
from tests.mc.processes import McProcess, McProcesses
from tests.support.mc import assign_request

pytestmark = pytest.mark.slow

RETIRE_S = 12.0  # how long the GC keeps the replaced key in its JWKS (GC_RETIRED_KEY_…)
MC_REFRESH_S = 1.0  # how often the MC fetches the JWKS (MC_TRUSTED_GC_JWKS_REFRESH_SECONDS)
JOINS_AFTER_ROTATION = 8


class JoinLoop:
    """Joins a new meeting after another in a thread, recording every answer."""

    def __init__(self, gc: GcProc) -> None:
        self._url = gc.http_url
        self._stop = threading.Event()
        self.kids: list[str] = []
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="join-loop", daemon=True)

    def __enter__(self) -> JoinLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    @property
    def done(self) -> int:
        with self._lock:
            return len(self.kids) + len(self.failures)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            i = 0
            while not self._stop.is_set():
                i += 1
                try:
                    response = client.post(f"{self._url}/v1/meetings/rotation-{i}/join")
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(f"join {i}: {type(exc).__name__}")
                    continue
                with self._lock:
                    if response.status_code == 200:
                        token = response.json()["join_token"]
                        self.kids.append(jwt.get_unverified_header(token)["kid"])
                    else:
                        self.failures.append(f"join {i}: {response.status_code} {response.text}")


def jwks(gc: GcProc) -> list[dict[str, str]]:
    response = gc.get("/.well-known/jwks.json")
    assert response.status_code == 200, response.text
    keys: list[dict[str, str]] = response.json()["keys"]
    return keys


def assign_with_old_key(mc: McProc, old_key: Path, meeting_id: str) -> grpc.StatusCode:
    """AssignMeetingWithMh to the MC with a token of the old GC key: OK or the refusal."""
    token = mint_service_token(
        load_private_key(old_key),
        service_type=ServiceType.GLOBAL_CONTROLLER,
        scope=SCOPE_MC,
        issuer="gc-1",
        subject="gc-1",
        audience="mc-1",
    )
    with mc.channel() as channel:
        stub = pb_grpc.MeetingControllerServiceStub(channel)
        try:
            stub.AssignMeetingWithMh(
                assign_request(meeting_id),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=10,
            )
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def test_the_gc_key_rotates_with_no_failed_assignment(
    fleet: Fleet, database_url: str, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    generate_instance_key_files(keys, service="gc", instance_id="gc-1")
    generate_instance_key_files(keys, service="mc", instance_id="mc-1")
    gc_key = keys / "gc-1.key"
    old_kid = key_id(load_private_key(gc_key).public_key())
    old_copy = tmp_path / "old-gc-1.key"
    old_copy.write_bytes(gc_key.read_bytes())

    gc = fleet.start_gc(
        database_url,
        GC_SERVICE_KEY_FILE=str(gc_key),
        GC_TRUSTED_MC_KEY_FILES=str(keys / "mc-1.pub"),
        GC_ALLOW_UNBOUND_KEYS="true",  # the simulated MHs share the unbound mh.key
        GC_RETIRED_KEY_PUBLISH_SECONDS=str(RETIRE_S),
    )
    published = gc.get("/.well-known/jwks.json")
    assert published.headers["content-type"] == "application/jwk-set+json"
    assert published.headers["cache-control"] == "public, max-age=60"
    assert [(k["kid"], k["darktower_instance"]) for k in jwks(gc)] == [(old_kid, "gc-1")]
    assert all("d" not in k for k in jwks(gc))  # public keys only

    mc = fleet.start_mc(
        gc,
        "mc-1",
        service_key_file=str(keys / "mc-1.key"),
        trusted_gc_key_files="",
        trusted_gc_jwks_url=f"{gc.http_url}/.well-known/jwks.json",
        trusted_gc_jwks_refresh_seconds=str(MC_REFRESH_S),
    )
    fleet.start_mh_sim(gc, "mh-1", "zone-a")
    fleet.start_mh_sim(gc, "mh-2", "zone-b")
    fleet.wait_fleet(gc, mcs=["mc-1"], mhs=["mh-1", "mh-2"])

    with JoinLoop(gc) as loop:
        wait_until(lambda: loop.done >= 5, timeout=60, what="joins before the rotation")
        # The rotation: a new key in the GC's key file (atomically), then SIGHUP.
        fresh = tmp_path / "fresh"
        generate_instance_key_files(fresh, service="gc", instance_id="gc-1")
        new_kid = key_id(load_private_key(fresh / "gc-1.key").public_key())
        os.replace(fresh / "gc-1.key", gc_key)
        gc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: [k["kid"] for k in jwks(gc)] == [new_kid, old_kid],
            timeout=30,
            what="the new key published, the old one still",
        )
        before = loop.done
        wait_until(
            lambda: loop.done >= before + JOINS_AFTER_ROTATION,
            timeout=90,
            what="joins after the rotation",
        )
        # Meanwhile the MC still accepts what the old key signed.
        assert assign_with_old_key(mc, old_copy, "rotation-old-1") == grpc.StatusCode.OK
    assert loop.failures == [], loop.failures
    assert loop.kids[0] == old_kid
    assert loop.kids[-JOINS_AFTER_ROTATION:] == [new_kid] * JOINS_AFTER_ROTATION

    gc_log = gc.log()
    assert f"signing key reloaded: kid {new_kid} replaces {old_kid}" in gc_log
    assert f"keys added ['{new_kid}']" in mc.log()

    # Unpublished after RETIRE_S; the MC drops it at its next refresh and refuses it.
    wait_until(
        lambda: [k["kid"] for k in jwks(gc)] == [new_kid],
        timeout=RETIRE_S + 30,
        what="the old key unpublished",
    )
    wait_until(
        lambda: (
            assign_with_old_key(mc, old_copy, "rotation-old-2") == grpc.StatusCode.UNAUTHENTICATED
        ),
        timeout=MC_REFRESH_S + 30,
        what="the old key refused by the MC",
    )
    assert f"removed ['{old_kid}']" in mc.log()
    # And the GC's calls (signed with the new key only now) still go through.
    response = gc.join("rotation-last")
    assert response.status_code == 200, response.text
    assert jwt.get_unverified_header(response.json()["join_token"])["kid"] == new_kid
    for log in (gc_log, mc.log()):
        assert "PRIVATE KEY" not in log and "BEGIN" not in log
    print(json.dumps({"joins": len(loop.kids), "failures": len(loop.failures)}))


def assign_as(mc: McProcess, key: Path, meeting_id: str) -> grpc.StatusCode:
    """AssignMeetingWithMh to a standalone MC ("mc-test") with a token of GC key `key`."""
    token = mint_service_token(
        load_private_key(key),
        service_type=ServiceType.GLOBAL_CONTROLLER,
        scope=SCOPE_MC,
        issuer="gc-1",
        subject="gc-1",
        audience="mc-test",
    )
    with grpc.insecure_channel(mc.grpc_target) as channel:
        stub = pb_grpc.MeetingControllerServiceStub(channel)
        try:
            stub.AssignMeetingWithMh(
                assign_request(meeting_id),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=10,
            )
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


@pytest.mark.timeout(150)
def test_sighup_reloads_the_mcs_trusted_key_directory(tmp_path: Path, redis_url: str) -> None:
    trusted, spare = tmp_path / "trusted", tmp_path / "spare"
    generate_instance_key_files(trusted, service="gc", instance_id="gc-1")
    generate_instance_key_files(spare, service="gc", instance_id="gc-1")
    old_key, new_key = trusted / "gc-1.key", spare / "gc-1.key"
    old_kid = key_id(load_private_key(old_key).public_key())
    new_kid = key_id(load_private_key(new_key).public_key())
    processes = McProcesses(tmp_path, trusted)
    try:
        mc = processes.start(redis_url)
        assert assign_as(mc, old_key, "hup-1") == grpc.StatusCode.OK
        assert assign_as(mc, new_key, "hup-2") == grpc.StatusCode.UNAUTHENTICATED

        # The new key's .pub joins the directory: trusted after SIGHUP.
        (trusted / "gc-1.next.pub").write_bytes((spare / "gc-1.pub").read_bytes())
        mc.send_signal(signal.SIGHUP)
        added = f"trusted GC keys reloaded: added ['{new_kid}'], removed none"
        wait_until(lambda: added in mc.log(), timeout=30, what="the reload logged")
        assert assign_as(mc, new_key, "hup-3") == grpc.StatusCode.OK

        # A broken file: one error line, and both keys still work.
        (trusted / "broken.pub").write_text("not a key\n")
        mc.send_signal(signal.SIGHUP)
        wait_until(lambda: "not reloaded" in mc.log(), timeout=30, what="the refusal logged")
        errors = [line for line in mc.log().splitlines() if "not reloaded" in line]
        assert len(errors) == 1 and "keeping 2 keys" in errors[0], errors
        assert assign_as(mc, old_key, "hup-4") == grpc.StatusCode.OK
        assert assign_as(mc, new_key, "hup-5") == grpc.StatusCode.OK

        # The old key removed (and the broken file): refused from then on.
        (trusted / "broken.pub").unlink()
        (trusted / "gc-1.pub").unlink()
        mc.send_signal(signal.SIGHUP)
        removed = f"added none, removed ['{old_kid}']"
        wait_until(lambda: removed in mc.log(), timeout=30, what="the removal logged")
        assert assign_as(mc, old_key, "hup-6") == grpc.StatusCode.UNAUTHENTICATED
        assert assign_as(mc, new_key, "hup-7") == grpc.StatusCode.OK
        assert "BEGIN" not in mc.log()
        mc.send_signal(signal.SIGTERM)
        # SIGHUP never stopped it; SIGTERM still does. With no GC to move its meetings to, the
        # drain keeps them until its deadline (MC_DRAIN_SECONDS, 30 s) and then ends them.
        assert mc.wait(timeout=60) == 0
    finally:
        processes.close()
