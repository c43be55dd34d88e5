"""Client channels to peers: one reused channel per endpoint (docs/reference.md), from an
`http(s)://` URL.

Every channel carries the current trace to the peer (`darktower.runtime.tracing_grpc`).

`https://` is TLS: the peer's certificate is verified against the caller's CA (`TlsConfig`;
the system's roots without one) and must name the host dialled; the caller presents its own
certificate when it has one (mTLS). `http://` is plaintext.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import grpc

from darktower.runtime.tls import TlsConfig
from darktower.runtime.tracing_grpc import ClientTracing

__all__ = ["channel_for", "grpc_target"]


def grpc_target(endpoint: str) -> tuple[str, bool]:
    """`http://host:port` → ("host:port", False); `https://…` → (…, True). ValueError otherwise."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("endpoint must be an http:// or https:// URL with a host")
    default_port = 443 if parts.scheme == "https" else 80
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{parts.port or default_port}", parts.scheme == "https"


def channel_for(
    endpoint: str, *, tls: TlsConfig | None = None, connect_timeout: float = 5.0
) -> grpc.aio.Channel:
    """A channel that reconnects quickly once the peer is back, and gives up a connection
    attempt after `connect_timeout` seconds (the per-call deadline still bounds each call)."""
    target, secure = grpc_target(endpoint)
    options = [
        ("grpc.min_reconnect_backoff_ms", int(connect_timeout * 1000)),
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
    ]
    # grpc-stubs leave the client interceptor type as "cast or ignore".
    interceptors: list[Any] = [ClientTracing()]
    if secure:
        credentials = (tls or TlsConfig()).channel_credentials()
        return grpc.aio.secure_channel(
            target, credentials, options=options, interceptors=interceptors
        )
    return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
