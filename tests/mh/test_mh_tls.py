"""The MC → MH hop on mutual TLS (issue 13: TLS on every gRPC hop, optional mTLS): a real
`darktower mh` (`MhApp`, its own Janus) serving MediaHandlerService with a certificate of a
local CA and `MH_TLS_REQUIRE_CLIENT_CERT=true` advertises an `https://` endpoint; the MC's
`MediaRegistrar` with an MC certificate of that CA registers a participant there. Without a
client certificate, with one of another CA, or trusting another CA itself, the MC gets no grant
and logs one line naming the MH, its endpoint and the TLS reason."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from darktower.auth.certs import IssuedCert, generate_certs, parse_hosts
from darktower.auth.client import SigningKey
from darktower.auth.keys import load_private_key
from darktower.mc.media import MediaRegistrar
from darktower.mc.validation import MhRole, MhTarget
from darktower.mh.server import MhApp
from darktower.runtime.tls import load_tls
from tests.client import in_process_fleet
from tests.support.janus_client import requires_janus
from tests.support.media import mh_settings
from tests.support.waiting import eventually

pytestmark = [requires_janus, pytest.mark.timeout(120)]

MH_ID = "mh-1"
LOOPBACK = parse_hosts("127.0.0.1")


async def grants(
    key_dir: Path,
    target: MhTarget,
    cert: IssuedCert | None,
    ca: Path,
    participant: str,
) -> int:
    """How many grants mc-1's registrar gets for `participant` with this TLS configuration."""
    tls = load_tls(cert.cert if cert else None, cert.key if cert else None, ca, prefix="MC_TLS")
    registrar = MediaRegistrar(
        SigningKey(load_private_key(key_dir / "mc" / "mc-1.key")), "mc-1", tls=tls, timeout=10
    )
    try:
        return len(await registrar.grants("standup", participant, [target]))
    finally:
        await registrar.aclose()


async def test_the_mc_registers_participants_on_an_mh_over_mutual_tls(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pki, elsewhere = tmp_path / "pki", tmp_path / "other-ca"
    mh_cert = generate_certs(pki, MH_ID, LOOPBACK)
    mc_cert = generate_certs(pki, "mc-1", LOOPBACK)
    stranger = generate_certs(elsewhere, "mc-1", LOOPBACK)
    async with in_process_fleet(tmp_path, "redis://unused", mcs=0, mhs=0) as fleet:
        settings = mh_settings(fleet.key_dir, fleet.gc_grpc, MH_ID, tmp_path).model_copy(
            update={
                "tls_cert_file": mh_cert.cert,
                "tls_key_file": mh_cert.key,
                "tls_ca_file": mh_cert.ca_cert,
                "tls_require_client_cert": True,
            }
        )
        mh = MhApp(settings)
        await mh.start()
        try:
            await eventually(lambda: mh.ready()[0], timeout=30, what="MH ready")
            assert mh.grpc_endpoint.startswith("https://127.0.0.1:")
            target = MhTarget(MH_ID, mh.media_url, MhRole.PRIMARY, mh.grpc_endpoint)
            key_dir = fleet.key_dir

            assert await grants(key_dir, target, mc_cert, pki / "ca.crt", "alice") == 1

            caplog.clear()
            caplog.set_level(logging.WARNING, logger="darktower.mc.media")
            # No client certificate; one of another CA: the MH hangs up at the handshake.
            assert await grants(key_dir, target, None, pki / "ca.crt", "bob") == 0
            assert await grants(key_dir, target, stranger, pki / "ca.crt", "bob") == 0
            # The MC trusting another CA: it refuses the MH's certificate itself.
            assert await grants(key_dir, target, stranger, elsewhere / "ca.crt", "bob") == 0
            lines = [r.getMessage() for r in caplog.records]
            assert len(lines) == 3, lines
            for line in lines:
                assert f"MH {MH_ID} at {mh.grpc_endpoint} did not register participant bob" in line
                assert "TLS handshake failed" in line
            assert all("client certificate" in line for line in lines[:2])
            assert "certificate verify failed: unknown CA" in lines[2]
            # Nothing of a token or key material in them.
            assert not any("Bearer" in line or "PRIVATE KEY" in line for line in lines)

            # The MH kept serving the MC with the right certificate.
            assert await grants(key_dir, target, mc_cert, pki / "ca.crt", "carol") == 1
        finally:
            await mh.stop()
