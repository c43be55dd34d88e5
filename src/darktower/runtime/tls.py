"""TLS for every hop: the files a service is configured with, loaded once, turned into gRPC
credentials, an `ssl.SSLContext` for its HTTPS/WSS listeners and one clear line when a peer
cannot be reached over TLS.

A service has a certificate and key (it serves TLS: gRPC, and its HTTP API or client WebSocket)
and a CA (what it trusts when it calls out; with `require_client_cert` also what a caller's
certificate must chain to). With a certificate and key it also presents them when it calls a
peer, so a peer requiring client certificates (mTLS) accepts it. Outgoing calls follow the
peer's URL: `https://` is TLS with the peer's certificate verified against the CA (or the
system's roots without one) and its host name checked, `http://` is plaintext.

Key files are secrets: messages name their path, never their content.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

__all__ = ["TlsConfig", "TlsError", "describe_rpc_error", "load_tls", "setting_names"]


class TlsError(ValueError):
    """A TLS file is missing, unreadable, not PEM, or a certificate and key do not match."""


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """The loaded TLS material of one service (a `TlsConfig()` is plaintext everywhere)."""

    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    require_client_cert: bool = False
    cert_chain: bytes | None = None
    private_key: bytes | None = None
    root_certificates: bytes | None = None

    def __repr__(self) -> str:
        # The key bytes are a secret: only the paths are shown.
        return (
            f"TlsConfig(cert_file={self.cert_file}, key_file={self.key_file}, "
            f"ca_file={self.ca_file}, require_client_cert={self.require_client_cert})"
        )

    @property
    def serving(self) -> bool:
        """Whether this service's own listeners use TLS (it has a certificate and key)."""
        return self.cert_chain is not None

    @property
    def scheme(self) -> str:
        """The scheme its advertised URLs carry: `https` when serving TLS, else `http`."""
        return "https" if self.serving else "http"

    @property
    def log_note(self) -> str:
        """What a start line says after the protocol name: "", " (TLS)" or " (mTLS)"."""
        if not self.serving:
            return ""
        return " (mTLS: client certificates required)" if self.require_client_cert else " (TLS)"

    def server_credentials(self) -> grpc.ServerCredentials:
        """gRPC server credentials; a client certificate chaining to the CA is required with
        `require_client_cert`."""
        assert self.cert_chain is not None and self.private_key is not None
        return grpc.ssl_server_credentials(
            [(self.private_key, self.cert_chain)],
            root_certificates=self.root_certificates if self.require_client_cert else None,
            require_client_auth=self.require_client_cert,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Credentials for an `https://` peer: its certificate checked against the CA (the
        system's roots without one); this service's certificate presented when it has one."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.cert_chain,
        )

    def server_ssl_context(self) -> ssl.SSLContext:
        """For HTTPS/WSS listeners (browsers and CLI clients: no client certificate asked)."""
        assert self.cert_file is not None and self.key_file is not None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def _read(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TlsError(f"{what} {path}: cannot read ({exc.strerror or exc})") from None
    if b"-----BEGIN " not in data:
        raise TlsError(f"{what} {path}: not a PEM file")
    return data


def setting_names(prefix: str) -> tuple[str, str, str, str]:
    """The names the messages use for the four settings: `MC_TLS` → `MC_TLS_CERT_FILE`, ...;
    `--tls` → `--tls-cert`, `--tls-key`, `--tls-ca` (no client-certificate option there)."""
    if prefix.startswith("--"):
        return f"{prefix}-cert", f"{prefix}-key", f"{prefix}-ca", f"{prefix}-require-client-cert"
    return (
        f"{prefix}_CERT_FILE",
        f"{prefix}_KEY_FILE",
        f"{prefix}_CA_FILE",
        f"{prefix}_REQUIRE_CLIENT_CERT",
    )


def load_tls(
    cert_file: Path | None,
    key_file: Path | None,
    ca_file: Path | None,
    *,
    require_client_cert: bool = False,
    prefix: str,
) -> TlsConfig:
    """Read and check the files once at start; `prefix` names the settings in messages
    (`MC_TLS` for environment variables, `--tls` for options). A certificate without its key
    (or the reverse), a client certificate requirement without a certificate and a CA, or a key
    that is not the certificate's is a `TlsError`."""
    cert_name, key_name, ca_name, require_name = setting_names(prefix)
    if (cert_file is None) != (key_file is None):
        raise TlsError(f"{cert_name} and {key_name} go together: set both or neither")
    if require_client_cert and (cert_file is None or ca_file is None):
        raise TlsError(
            f"{require_name} needs {cert_name}, {key_name} and {ca_name} "
            "(the CA client certificates must chain to)"
        )
    cert = key = None
    if cert_file is not None and key_file is not None:
        cert = _read(cert_file, "certificate")
        key = _read(key_file, "key")
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert_file, key_file)
        except ssl.SSLError:
            raise TlsError(
                f"key {key_file} is not the key of certificate {cert_file} (or not PEM)"
            ) from None
    root = _read(ca_file, "CA certificate") if ca_file is not None else None
    return TlsConfig(cert_file, key_file, ca_file, require_client_cert, cert, key, root)


# What grpc's core says about a failed TLS connection, and the words a person understands.
_TLS_REASONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"hostname verification|peer name .* is not in peer certificate", re.I | re.S),
     "TLS handshake failed (wrong host name: the certificate does not name this host)"),
    (re.compile(r"certificate_verify_failed|certificate verify failed", re.I),
     "TLS handshake failed (certificate verify failed: unknown CA)"),
    (re.compile(r"wrong_version_number|http_request|packet_length_too_long", re.I),
     "TLS handshake failed (the peer does not speak TLS: use http:// for a plaintext peer)"),
    (re.compile(r"tls handshake|ssl handshake|ssl_error", re.I), "TLS handshake failed"),
)  # fmt: skip

# The peer hangs up during connection setup without a word: what a plaintext client sees from
# a TLS port, and a TLS client without an accepted certificate from a port requiring one.
_CLOSED = re.compile(r"socket closed|connection reset|end of tcp stream", re.I)


def describe_rpc_error(endpoint: str, exc: grpc.aio.AioRpcError) -> str:
    """Why a call to `endpoint` failed, in one line: the TLS problem when it was one ("TLS
    handshake failed (certificate verify failed: unknown CA)"), a hint for a plaintext call
    that the peer hung up on (a TLS port), else the status code name (UNAVAILABLE, ...)."""
    details = exc.details() or ""
    if exc.code() != grpc.StatusCode.UNAVAILABLE:
        return exc.code().name
    for pattern, reason in _TLS_REASONS:
        if pattern.search(details):
            return reason
    if _CLOSED.search(details):
        if endpoint.startswith("https://"):
            return (
                "TLS handshake failed (the peer closed the connection: does it require a "
                "client certificate this side lacks or it does not trust?)"
            )
        return "the peer closed the connection (is it a TLS port? then use https://)"
    return exc.code().name
