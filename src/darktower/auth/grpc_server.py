"""The gRPC server every darktower service runs: one place for its limits (docs/wire-protocol.md,
docs/reference.md).

An unauthenticated caller must not be able to make a server allocate: the auth interceptor
refuses before the body is read (`darktower.auth.interceptor`), and these limits bound what an
authenticated one can make it hold.

* `MAX_RECEIVE_MESSAGE_BYTES` = 3 MiB (3 145 728 bytes). The largest legitimate message is a
  comprehensive heartbeat with `MAX_MEETING_LOADS` = 10 000 `MeetingLoad` entries whose meeting
  ids have the maximal 255 bytes: each entry is 1 (tag) + 2 (length) + [1 + 2 + 255 (id) +
  1 + 5 (participants, uint32)] = 267 bytes, 2 670 000 for 10 000, plus a 255-byte controller id
  and the capacity/health/usage fields: 2 670 296 bytes (2.55 MiB), computed from the real
  message in `tests/auth/test_grpc_server.py`. 3 MiB leaves ~18 % headroom; everything else on
  the wire is under 10 KiB. A bigger message is RESOURCE_EXHAUSTED before any handler runs.
* `MAX_CONCURRENT_RPCS` = 256 per server. An MC serves its GCs' assignments (a handful at a
  time); a GC serves MCs' and MHs' heartbeats and reports, each a few milliseconds, so even
  a thousand MCs beating every few seconds keep a few dozen in flight. Over the cap a call is
  answered RESOURCE_EXHAUSTED at once (its sender retries on its next beat), so authenticated
  traffic can hold at most 256 x 3 MiB = 768 MiB of request bodies, and nothing else can.
* no BDP probing (`grpc.http2.bdp_probe` = 0): with it, gRPC grows a connection's HTTP/2
  receive windows to megabytes and buffers that much of every stream's body before anything
  asks for it — 200 refused 4 MiB calls still cost a bare server ~46 MiB. Without it the window
  stays at gRPC's 64 KiB default: the same flood costs ~2 MiB, and a maximal 2.5 MiB heartbeat
  takes ~40 window round trips (milliseconds on a LAN).
* the metadata limits are raised above a maximal 8192-byte token (see `GRPC_SERVER_OPTIONS`).

Calls that carry a W3C `traceparent` run in a server span (`darktower.runtime.tracing_grpc`);
that interceptor comes after the caller's ones, so only admitted calls make spans.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import grpc.aio

from darktower.auth.tokens import MAX_TOKEN_BYTES
from darktower.runtime.tracing_grpc import ServerTracing

__all__ = [
    "GRPC_SERVER_OPTIONS",
    "MAX_CONCURRENT_RPCS",
    "MAX_RECEIVE_MESSAGE_BYTES",
    "service_grpc_server",
]

MAX_RECEIVE_MESSAGE_BYTES = 3 * 1024 * 1024
MAX_CONCURRENT_RPCS = 256

# gRPC's default metadata limit (8 KiB soft, 16 KiB hard — between the two, calls are refused
# at random) is too close to a maximal 8192-byte token plus its header name. Raised, so that the
# size rule is ours (too_large) and deterministic.
GRPC_SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_metadata_size", 4 * MAX_TOKEN_BYTES),
    ("grpc.absolute_max_metadata_size", 8 * MAX_TOKEN_BYTES),
    ("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_BYTES),
    ("grpc.http2.bdp_probe", 0),
)

if TYPE_CHECKING:
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _Interceptor = grpc.aio.ServerInterceptor


def service_grpc_server(
    *,
    interceptors: Sequence[_Interceptor],
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Server:
    """A grpc.aio server with the limits above and `interceptors` (the auth interceptor first),
    then the tracing one; `options` are added after ours (listen options, TLS-related channel
    args)."""
    return grpc.aio.server(
        interceptors=[*interceptors, ServerTracing()],
        options=[*GRPC_SERVER_OPTIONS, *options],
        maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
    )
