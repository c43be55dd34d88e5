"""`darktower assign`: ask an MC to host a meeting, as the GC would (an operator's probe).

`--mc` is `host:port` or an `http(s)://` URL. TLS when the URL is `https://` or any `--tls-*`
option is given: the MC's certificate is verified against `--tls-ca` (the system's roots
without it) and must name the host dialled; `--tls-cert`/`--tls-key` are presented to an MC
requiring client certificates (mTLS). A failed handshake is one line naming the reason.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import grpc
import typer

from darktower.auth.client import ServiceTokenProvider
from darktower.auth.errors import AuthError
from darktower.auth.keys import load_service_key
from darktower.auth.tokens import SERVICE_PROFILES
from darktower.runtime.grpc_channels import grpc_target
from darktower.runtime.tls import TlsConfig, TlsError, describe_rpc_error, load_tls
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

__all__ = ["assign"]


def _endpoint(mc: str, tls_options: bool) -> tuple[str, bool]:
    """`--mc` → (gRPC target, TLS?); ValueError for a URL that cannot be called as asked."""
    if "://" not in mc:
        if not mc.strip():
            raise ValueError("--mc: empty (host:port or an http(s):// URL)")
        return mc, tls_options
    target, secure = grpc_target(mc)
    if tls_options and not secure:
        raise ValueError(f"--mc {mc} is plaintext (http://): --tls-* options need https://")
    return target, tls_options or secure


async def _call(
    target: str,
    tls: TlsConfig | None,
    request: pb.AssignMeetingWithMhRequest,
    metadata: tuple[tuple[str, str], ...],
) -> pb.AssignMeetingWithMhResponse:
    channel = (
        grpc.aio.secure_channel(target, tls.channel_credentials())
        if tls is not None
        else grpc.aio.insecure_channel(target)
    )
    async with channel:
        stub = pb_grpc.MeetingControllerServiceStub(channel)
        return await stub.AssignMeetingWithMh(request, metadata=metadata, timeout=10)


def assign(
    meeting_id: Annotated[str, typer.Argument(help="The meeting to place on the MC.")],
    key: Annotated[Path, typer.Option(help="The GC's private key (darktower keys generate).")],
    mc: Annotated[
        str, typer.Option(help="The MC's gRPC address: host:port, or an http(s):// URL.")
    ] = "127.0.0.1:50052",
    mc_id: Annotated[
        str, typer.Option("--mc-id", help="The MC's id: the token is for it alone (aud).")
    ] = "mc-1",
    mh: Annotated[
        list[str] | None, typer.Option(help="MH endpoint, best first (repeatable).")
    ] = None,
    tls_ca: Annotated[
        Path | None,
        typer.Option(help="CA that verifies a TLS MC (implies TLS; default: system roots)."),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(help="TLS certificate presented to the MC (mTLS; implies TLS).")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Its private key.")] = None,
) -> None:
    """Call AssignMeetingWithMh on an MC with a GC service token; print the answer as JSON."""
    service_type, scope = SERVICE_PROFILES["gc"]
    try:
        signing = load_service_key(key)
        # A bound key vouches for its own GC only (`sub`); a legacy one names the CLI.
        issuer = signing.instance_id or "darktower-cli"
        provider = ServiceTokenProvider(
            signing.private_key,
            service_type=service_type,
            scope=scope,
            issuer=issuer,
            audience=mc_id,
        )
        tls_options = any(f is not None for f in (tls_ca, tls_cert, tls_key))
        target, secure = _endpoint(mc, tls_options)
        tls = load_tls(tls_cert, tls_key, tls_ca, prefix="--tls") if secure else None
    except (AuthError, TlsError, ValueError) as exc:
        typer.echo(f"darktower assign: {exc}", err=True)
        raise typer.Exit(2) from None
    endpoints = mh or ["https://mh-1.local:4433"]
    request = pb.AssignMeetingWithMhRequest(
        meeting_id=meeting_id,
        mh_assignments=[
            pb.MhAssignment(
                mh_id=f"mh-{i + 1}",
                webtransport_endpoint=url,
                role=pb.MH_ROLE_PRIMARY if i == 0 else pb.MH_ROLE_BACKUP,
            )
            for i, url in enumerate(endpoints)
        ],
        requesting_gc_id="darktower-cli",
    )
    try:
        answer = asyncio.run(_call(target, tls, request, provider.metadata()))
    except grpc.aio.AioRpcError as exc:
        endpoint = f"{'https' if secure else 'http'}://{target}"
        reason = describe_rpc_error(endpoint, exc)
        if reason == exc.code().name:
            typer.echo(f"darktower assign: {reason}: {exc.details()}", err=True)
        else:  # a TLS or connection problem, named
            typer.echo(f"darktower assign: {endpoint}: {reason}", err=True)
        raise typer.Exit(1) from None
    reason = pb.RejectionReason.Name(answer.rejection_reason)
    typer.echo(json.dumps({"accepted": answer.accepted, "rejection_reason": reason}))
