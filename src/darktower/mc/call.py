"""`darktower assign`: ask an MC to host a meeting, as the GC would (an operator's probe)."""

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
from darktower.wire.dark_tower import internal_pb2 as pb
from darktower.wire.dark_tower import internal_pb2_grpc as pb_grpc

__all__ = ["assign"]


async def _call(
    target: str, request: pb.AssignMeetingWithMhRequest, metadata: tuple[tuple[str, str], ...]
) -> pb.AssignMeetingWithMhResponse:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.MeetingControllerServiceStub(channel)
        return await stub.AssignMeetingWithMh(request, metadata=metadata, timeout=10)


def assign(
    meeting_id: Annotated[str, typer.Argument(help="The meeting to place on the MC.")],
    key: Annotated[Path, typer.Option(help="The GC's private key (darktower keys generate).")],
    mc: Annotated[str, typer.Option(help="The MC's gRPC address, host:port.")] = "127.0.0.1:50052",
    mc_id: Annotated[
        str, typer.Option("--mc-id", help="The MC's id: the token is for it alone (aud).")
    ] = "mc-1",
    mh: Annotated[
        list[str] | None, typer.Option(help="MH endpoint, best first (repeatable).")
    ] = None,
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
    except AuthError as exc:
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
        answer = asyncio.run(_call(mc, request, provider.metadata()))
    except grpc.aio.AioRpcError as exc:
        typer.echo(f"darktower assign: {exc.code().name}: {exc.details()}", err=True)
        raise typer.Exit(1) from None
    reason = pb.RejectionReason.Name(answer.rejection_reason)
    typer.echo(json.dumps({"accepted": answer.accepted, "rejection_reason": reason}))
