"""A fleet of processes on mutual TLS (issue 13: "TLS and mTLS paths work"): the GC and the MC
both require client certificates of the fleet's CA (`*_TLS_REQUIRE_CLIENT_CERT=true`). The MC
registers and beats with its certificate, `darktower mh-sim --tls-cert/--tls-key/--tls-ca`
registers and reports with its own, and the GC's assignment call presents the GC's, so a join
is placed on the MC. A caller that trusts the CA but has no certificate, or one from another
CA, is refused at the handshake by both servers; one with a certificate of the fleet's CA gets
through the handshake and is then refused by the token check (UNAUTHENTICATED): the refusals
above are the certificate's doing.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from darktower.auth.certs import generate_certs, parse_hosts
from darktower.runtime.grpc_channels import grpc_target
from tests.e2e.fleet import Fleet

pytestmark = pytest.mark.slow

GC_METHOD = "/dark_tower.internal.GlobalControllerService/RegisterMC"
MC_METHOD = "/dark_tower.internal.MeetingControllerService/AssignMeetingWithMh"


def call(endpoint: str, method: str, credentials: grpc.ChannelCredentials) -> grpc.StatusCode:
    """An empty, tokenless call of `method` at `endpoint` over TLS with `credentials`."""
    target, secure = grpc_target(endpoint)
    assert secure, endpoint
    with grpc.secure_channel(target, credentials) as channel:
        try:
            channel.unary_unary(method, None, None)(b"", timeout=10)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def credentials(
    ca: Path, cert: Path | None = None, key: Path | None = None
) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )


def test_a_fleet_on_mutual_tls_places_joins_and_refuses_callers_without_a_certificate(
    fleet: Fleet, database_url: str, tmp_path: Path
) -> None:
    fleet.add_keys(mcs=["mc-1"], mhs=["mh-1"])
    gc = fleet.start_gc(
        database_url, wait=False, GC_ALLOW_GUESTS="true", GC_TLS_REQUIRE_CLIENT_CERT="true"
    )
    mc = fleet.start_mc(gc, "mc-1", tls_require_client_cert="true")
    fleet.start_mh_sim(gc, "mh-1", "zone-a")
    gc.wait_ready()
    fleet.wait_fleet(gc, mcs=["mc-1"], mhs=["mh-1"])
    assert gc.grpc_endpoint.startswith("https://")
    assert gc.controllers()["mc-1"]["grpc_endpoint"].startswith("https://")

    # GC → MC over mTLS: the assignment is placed.
    answer = gc.join("mtls-standup")
    assert answer.status_code == 200, answer.text
    assert answer.json()["mc_id"] == "mc-1"

    ca = fleet.ca_file
    assert ca is not None
    own = generate_certs(fleet.tls_dir, "tester", parse_hosts("127.0.0.1"))
    stranger = generate_certs(tmp_path / "other-ca", "tester", parse_hosts("127.0.0.1"))
    for endpoint, method in ((gc.grpc_endpoint, GC_METHOD), (mc.grpc_endpoint, MC_METHOD)):
        # No client certificate, or one of another CA: the handshake fails.
        assert call(endpoint, method, credentials(ca)) == grpc.StatusCode.UNAVAILABLE
        other = credentials(ca, stranger.cert, stranger.key)
        assert call(endpoint, method, other) == grpc.StatusCode.UNAVAILABLE
        # A certificate of the fleet's CA gets in, and then needs a token like anyone.
        admitted = credentials(ca, own.cert, own.key)
        assert call(endpoint, method, admitted) == grpc.StatusCode.UNAUTHENTICATED

    # The fleet kept working through the refusals.
    again = gc.join("mtls-standup")
    assert again.status_code == 200, again.text
    assert again.json()["mc_id"] == "mc-1"
