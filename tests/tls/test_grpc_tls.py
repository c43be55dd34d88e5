"""A real GC serving gRPC and HTTPS with TLS on loopback, called by real clients: a verified
connection works; mTLS refuses a caller without a certificate (or with one from another CA)
and accepts one with; plaintext to the TLS port, an unknown CA, a wrong host name and TLS to a
plaintext port each fail fast with a line naming the reason."""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest

from darktower.auth.certs import generate_certs, parse_hosts
from darktower.auth.keys import generate_key_files
from darktower.embedded.redis import free_port
from darktower.gc.server import GcApp
from darktower.gc.settings import GcSettings
from darktower.runtime.grpc_channels import channel_for
from darktower.runtime.serving import StartupError
from darktower.runtime.tls import TlsConfig, describe_rpc_error, load_tls
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

pytestmark = pytest.mark.timeout(60)

CALL_TIMEOUT_S = 10.0  # a failure must come well before it: a hang would hit it


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """`ca/`: the fleet's CA with gc (127.0.0.1, localhost), mc, and `elsewhere` (a name the
    GC's address is not); `other/`: another CA with a client certificate of its own."""
    ca, other = tmp_path / "ca", tmp_path / "other"
    generate_certs(ca, "gc", parse_hosts("127.0.0.1,localhost"))
    generate_certs(ca, "mc", parse_hosts("127.0.0.1"))
    generate_certs(ca, "elsewhere", parse_hosts("gc.example"))
    generate_certs(other, "mc", parse_hosts("127.0.0.1"))
    return tmp_path


def gc_settings(tmp_path: Path, pki: Path, cert: str = "gc", **tls: object) -> GcSettings:
    keys = tmp_path / "keys"
    if not keys.exists():
        generate_key_files(keys)
    return GcSettings(
        id="gc-tls",
        grpc_bind=f"127.0.0.1:{free_port()}",
        http_bind=f"127.0.0.1:{free_port()}",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'gc.sqlite3'}",
        service_key_file=keys / "gc.key",
        trusted_mc_key_files=[keys / "mc.pub"],
        tls_cert_file=pki / "ca" / f"{cert}.crt",
        tls_key_file=pki / "ca" / f"{cert}.key",
        tls_ca_file=pki / "ca" / "ca.crt",
        **tls,
    )


@pytest.fixture
async def started() -> AsyncIterator[list[GcApp]]:
    apps: list[GcApp] = []
    try:
        yield apps
    finally:
        for app in apps:
            await app.stop()


async def start_gc(apps: list[GcApp], settings: GcSettings) -> GcApp:
    app = GcApp(settings)
    apps.append(app)
    await app.start()
    return app


def client_tls(pki: Path, *, ca: str = "ca", cert: str | None = None) -> TlsConfig:
    """A caller trusting `pki/<ca>/ca.crt`, presenting `pki/<ca>/<cert>.crt` if given."""
    directory = pki / ca
    return load_tls(
        directory / f"{cert}.crt" if cert else None,
        directory / f"{cert}.key" if cert else None,
        directory / "ca.crt",
        prefix="--tls",
    )


async def call(endpoint: str, tls: TlsConfig | None) -> tuple[grpc.StatusCode, str, float]:
    """RegisterMC without a token: UNAUTHENTICATED proves the connection was made and the GC
    answered; anything failing before that is the connection's (code, described, seconds)."""
    channel = channel_for(endpoint, tls=tls)
    started = time.monotonic()
    try:
        await pb_grpc.GlobalControllerServiceStub(channel).RegisterMC(
            pb.RegisterMCRequest(id="mc-1"), timeout=CALL_TIMEOUT_S
        )
    except grpc.aio.AioRpcError as exc:
        return exc.code(), describe_rpc_error(endpoint, exc), time.monotonic() - started
    finally:
        await channel.close(None)
    raise AssertionError("a call without a token was answered")


def https(app: GcApp, host: str = "127.0.0.1") -> str:
    return f"https://{host}:{app.grpc_port}"


async def test_a_verified_tls_connection_reaches_the_gc_and_its_https_api(
    tmp_path: Path, pki: Path, started: list[GcApp]
) -> None:
    gc = await start_gc(started, gc_settings(tmp_path, pki))
    for host in ("127.0.0.1", "localhost"):
        code, _, _ = await call(https(gc, host), client_tls(pki))
        assert code == grpc.StatusCode.UNAUTHENTICATED  # through TLS, refused by the token check

    # The HTTP API is HTTPS with the same certificate: trusted with the CA, refused without.
    trusting = ssl.create_default_context(cafile=pki / "ca" / "ca.crt")
    base = f"https://127.0.0.1:{gc.http_port}"
    async with httpx.AsyncClient(verify=trusting) as http:
        assert (await http.get(f"{base}/health/live")).status_code == 200
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.get(f"{base}/health/live")
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.TransportError):
            await http.get(f"http://127.0.0.1:{gc.http_port}/health/live")


async def test_mtls_refuses_a_caller_without_a_certificate_of_its_ca_and_accepts_one_with(
    tmp_path: Path, pki: Path, started: list[GcApp]
) -> None:
    gc = await start_gc(started, gc_settings(tmp_path, pki, tls_require_client_cert=True))
    code, said, seconds = await call(https(gc), client_tls(pki))
    assert code == grpc.StatusCode.UNAVAILABLE and seconds < CALL_TIMEOUT_S / 2
    assert "TLS handshake failed" in said and "client certificate" in said

    # A certificate from another CA is no better.
    stranger = load_tls(
        pki / "other" / "mc.crt", pki / "other" / "mc.key", pki / "ca" / "ca.crt", prefix="--tls"
    )
    code, said, _ = await call(https(gc), stranger)
    assert code == grpc.StatusCode.UNAVAILABLE and "client certificate" in said

    code, _, _ = await call(https(gc), client_tls(pki, cert="mc"))
    assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_what_cannot_connect_fails_fast_with_its_reason(
    tmp_path: Path, pki: Path, started: list[GcApp]
) -> None:
    gc = await start_gc(started, gc_settings(tmp_path, pki))
    wrong_name = await start_gc(started, gc_settings(tmp_path / "b", pki, cert="elsewhere"))
    (tmp_path / "p").mkdir()
    plain = await start_gc(
        started,
        gc_settings(tmp_path / "p", pki).model_copy(
            update={"tls_cert_file": None, "tls_key_file": None}
        ),
    )
    cases = [
        (
            f"http://127.0.0.1:{gc.grpc_port}",
            client_tls(pki),
            "the peer closed the connection (is it a TLS port? then use https://)",
        ),
        (
            https(gc),
            client_tls(pki, ca="other"),
            "TLS handshake failed (certificate verify failed: unknown CA)",
        ),
        (https(gc), None, "TLS handshake failed (certificate verify failed: unknown CA)"),
        (
            https(wrong_name),
            client_tls(pki),
            "TLS handshake failed (wrong host name: the certificate does not name this host)",
        ),
        (
            https(plain),
            client_tls(pki),
            "TLS handshake failed (the peer does not speak TLS: use http:// for a plaintext peer)",
        ),
    ]
    for endpoint, tls, expected in cases:
        code, said, seconds = await call(endpoint, tls)
        assert (code, said) == (grpc.StatusCode.UNAVAILABLE, expected), endpoint
        assert seconds < CALL_TIMEOUT_S / 2, f"{endpoint} took {seconds:.1f}s: nearly a hang"
    # The plaintext GC itself still answers plaintext calls.
    code, _, _ = await call(f"http://127.0.0.1:{plain.grpc_port}", None)
    assert code == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"tls_key_file": None}, "GC_TLS_CERT_FILE and GC_TLS_KEY_FILE go together"),
        (
            {"tls_ca_file": None, "tls_require_client_cert": True},
            "GC_TLS_REQUIRE_CLIENT_CERT needs GC_TLS_CERT_FILE, GC_TLS_KEY_FILE and GC_TLS_CA_FILE",
        ),
        ({"tls_key_file": "mc.key"}, "is not the key of certificate"),
        ({"tls_ca_file": "missing.crt"}, "missing.crt: cannot read"),
    ],
)
def test_tls_settings_that_cannot_work_stop_the_start_with_one_line(
    tmp_path: Path, pki: Path, change: dict[str, object], said: str
) -> None:
    settings = gc_settings(tmp_path, pki)
    update = {k: (pki / "ca" / v if isinstance(v, str) else v) for k, v in change.items()}
    with pytest.raises(StartupError) as refused:
        GcApp(settings.model_copy(update=update))
    assert said in str(refused.value)
    assert "PRIVATE KEY" not in str(refused.value)
