"""`darktower assign` against an in-process MC: the operator's probe works end to end."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from darktower.auth.certs import generate_certs, parse_hosts
from tests.support.mc import RunningMc


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "darktower",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_assign_command_places_a_meeting(
    mc: RunningMc, key_dir: Path, redis_client: aioredis.Redis
) -> None:
    target = f"127.0.0.1:{mc.app.grpc_port}"
    code, out, _ = await run_cli(
        "assign",
        "cli-meeting",
        "--key",
        str(key_dir / "gc.key"),
        "--mc",
        target,
        "--mc-id",
        "mc-test",
    )
    assert code == 0
    assert json.loads(out) == {"accepted": True, "rejection_reason": "REJECTION_REASON_UNSPECIFIED"}
    assert await redis_client.get("meeting:{cli-meeting}:owner") == b"mc-test"


async def test_assign_with_a_non_gc_key_is_refused(mc: RunningMc, key_dir: Path) -> None:
    target = f"127.0.0.1:{mc.app.grpc_port}"
    code, _, err = await run_cli("assign", "m", "--key", str(key_dir / "mc.key"), "--mc", target)
    assert code == 1
    assert "UNAUTHENTICATED" in err


# Five CLI processes, each a Python start (about 12 s apiece on a loaded 2-core machine).
@pytest.mark.timeout(240)
async def test_assign_calls_a_tls_mc_with_its_ca_and_an_mtls_one_with_a_certificate(
    start_mc: Callable[..., Awaitable[RunningMc]],
    key_dir: Path,
    redis_client: aioredis.Redis,
    tmp_path: Path,
) -> None:
    pki = tmp_path / "pki"
    mc_cert = generate_certs(pki, "mc-test", parse_hosts("127.0.0.1,localhost"))
    cli_cert = generate_certs(pki, "operator", parse_hosts("localhost"))
    mc = await start_mc(
        tls_cert_file=mc_cert.cert,
        tls_key_file=mc_cert.key,
        tls_ca_file=mc_cert.ca_cert,
        tls_require_client_cert=True,
    )
    target = f"127.0.0.1:{mc.app.grpc_port}"
    base = ["assign", "tls-meeting", "--key", str(key_dir / "gc.key"), "--mc-id", "mc-test"]
    ca = ["--tls-ca", str(mc_cert.ca_cert)]
    client = ["--tls-cert", str(cli_cert.cert), "--tls-key", str(cli_cert.key)]

    # Plaintext to the TLS port: refused, and the line says why.
    code, _, err = await run_cli(*base, "--mc", target)
    assert code == 1
    assert "is it a TLS port? then use https://" in err
    # TLS without a client certificate: the MC requires one.
    code, _, err = await run_cli(*base, "--mc", target, *ca)
    assert code == 1
    assert "TLS handshake failed" in err
    # A CA the MC's certificate does not chain to.
    other = generate_certs(tmp_path / "other", "x", parse_hosts("127.0.0.1"))
    code, _, err = await run_cli(*base, "--mc", target, "--tls-ca", str(other.ca_cert), *client)
    assert code == 1
    assert "TLS handshake failed" in err
    assert await redis_client.get("meeting:{tls-meeting}:owner") is None

    # With the fleet's CA and a certificate from it: placed (host:port and https:// alike).
    code, out, err = await run_cli(*base, "--mc", target, *ca, *client)
    assert code == 0, err
    assert json.loads(out) == {"accepted": True, "rejection_reason": "REJECTION_REASON_UNSPECIFIED"}
    assert await redis_client.get("meeting:{tls-meeting}:owner") == b"mc-test"
    code, out, err = await run_cli(*base, "--mc", f"https://{target}", *ca, *client)
    assert code == 0, err


async def test_assign_refuses_tls_options_it_cannot_use(key_dir: Path, tmp_path: Path) -> None:
    pki = generate_certs(tmp_path, "c", parse_hosts("127.0.0.1"))
    key = ["assign", "m", "--key", str(key_dir / "gc.key")]
    code, _, err = await run_cli(*key, "--mc", "http://127.0.0.1:1", "--tls-ca", str(pki.ca_cert))
    assert code == 2
    assert "--tls-* options need https://" in err
    code, _, err = await run_cli(*key, "--mc", "127.0.0.1:1", "--tls-cert", str(pki.cert))
    assert code == 2
    assert "--tls-cert and --tls-key go together" in err
    code, _, err = await run_cli(*key, "--mc", "127.0.0.1:1", "--tls-ca", str(tmp_path / "no"))
    assert code == 2
    assert "cannot read" in err
